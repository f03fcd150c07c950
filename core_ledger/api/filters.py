"""Query filters (django-filter) for entries and balances; the operation choices are per ledger."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from core_ledger.api.schema import ID_SCHEMA
from core_ledger.api.serializers import as_utc
from core_ledger.ledger import registry
from core_ledger.selectors import HOLD_STATUSES, hold_status_filter


@extend_schema_field(ID_SCHEMA)
class IntegerFilter(filters.NumberFilter):
    """A whole number (ids): NumberFilter would take ``1.5`` and match id 1."""

    field_class = forms.IntegerField  # pyright: ignore[reportAssignmentType]  # django-filter's inferred DecimalField, not a declared type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", ID_SCHEMA["minimum"])
        kwargs.setdefault("max_value", ID_SCHEMA["maximum"])
        super().__init__(*args, **kwargs)


class UtcIsoDateTimeField(IsoDateTimeField):
    """The filter's form field: an ISO 8601 moment normalised to UTC (see ``as_utc``)."""

    def to_python(self, value: Any) -> Any:
        parsed = super().to_python(value)
        if parsed is None:
            return None
        try:
            return as_utc(parsed)
        except OverflowError:
            raise forms.ValidationError("The moment is out of range.", code="invalid") from None


class UtcIsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class StrictFilterSet(filters.FilterSet):
    """A filter sent with an empty value (``?user=``) is a 400, not silently no filter.

    The schema says what each filter takes (an id, a moment, an operation); an empty string is
    none of them, so the server refuses it like any other value outside the schema.
    """

    def is_valid(self) -> bool:
        valid = bool(super().is_valid())
        data: Mapping[str, Any] = self.data or {}
        for name in self.filters:
            if name in data and data.get(name) == "":
                self.form.add_error(name, "Give a value or leave the parameter out.")
                valid = False
        return valid


class EntryFilter(StrictFilterSet):
    """``operation``, ``created_after`` (inclusive), ``created_before`` (exclusive), ``user``.

    ``user`` narrows the entries the caller may see anyway: for a regular user another user's
    id gives an empty page, never that user's entries.
    """

    operation = filters.ChoiceFilter(choices=[])
    created_after = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="Entries at or after (ISO 8601)."
    )
    created_before = UtcIsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="Entries before (ISO 8601)."
    )
    user = IntegerFilter(field_name="user_id", help_text="Staff: one user's entries.")


class HoldFilter(StrictFilterSet):
    """``status`` (as callers see it: a pending hold past its expiry is ``expired``), ``user``.

    ``user`` narrows the holds the caller may see anyway, as on entries.
    """

    status = filters.ChoiceFilter(
        choices=[(value, value) for value in HOLD_STATUSES],
        method="filter_status",
        help_text="Only holds in this status.",
    )
    user = IntegerFilter(field_name="user_id", help_text="Staff: one user's holds.")

    def filter_status(self, queryset: QuerySet[Any], name: str, value: str) -> QuerySet[Any]:
        return hold_status_filter(queryset, value)


class BalanceFilter(StrictFilterSet):
    user = IntegerFilter(field_name="user_id", help_text="One user's balance.")


@functools.cache
def entry_filter_for(label: str) -> type[EntryFilter]:
    """The entry filter with the ledger's own operation choices."""
    ledger = registry.get(label)
    operation = filters.ChoiceFilter(
        choices=[(value, str(name)) for value, name in ledger.operations.choices],
        help_text="Only entries of this operation.",
    )
    return type(f"{label.capitalize()}EntryFilter", (EntryFilter,), {"operation": operation})


class StableOrderingFilter(OrderingFilter):
    """The caller's ordering, then the primary key, so that equal values never straddle pages.

    ``?ordering=`` takes the view's ``ordering_fields``, each optionally prefixed with ``-``,
    comma-separated; anything else is a 400 (DRF would silently ignore it), as the schema says.
    """

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        raw = request.query_params.get(self.ordering_param)
        if raw is not None and not re.fullmatch(self._pattern(view), raw):
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Unknown ordering {raw!r}: use {', '.join(view.ordering_fields)}, "
                        "comma-separated, each with - in front for descending."
                    ]
                }
            )
        ordering = super().get_ordering(request, queryset, view) or []
        return [*ordering, "pk"]

    def _pattern(self, view: Any) -> str:
        term = "-?(" + "|".join(re.escape(f) for f in view.ordering_fields) + ")"
        return f"^{term}(,{term})*$"

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        fields = ", ".join(view.ordering_fields)
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": f"Comma-separated, each of {fields}, `-` for descending.",
                "schema": {"type": "string", "pattern": self._pattern(view)},
            }
        ]
