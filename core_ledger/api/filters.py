"""Query filters (django-filter) for entries and balances; the operation choices are per ledger."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request

from core_ledger.api.serializers import as_utc
from core_ledger.ledger import registry


@extend_schema_field(OpenApiTypes.INT)
class IntegerFilter(filters.NumberFilter):
    """A whole number (ids): NumberFilter would take ``1.5`` and match id 1."""

    field_class = forms.IntegerField  # pyright: ignore[reportAssignmentType]  # django-filter's inferred DecimalField, not a declared type


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


class EntryFilter(filters.FilterSet):
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


class BalanceFilter(filters.FilterSet):
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
    """The caller's ordering, then the primary key, so that equal values never straddle pages."""

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        ordering = super().get_ordering(request, queryset, view) or []
        return [*ordering, "pk"]

    def remove_invalid_fields(
        self, queryset: QuerySet[Any], fields: Iterable[str], view: Any, request: Request
    ) -> list[str]:
        """Refuse an unknown ordering with 400 instead of silently ignoring it (DRF's default)."""
        allowed = [name for name, _ in self.get_valid_fields(queryset, view, {"request": request})]
        fields = list(fields)
        unknown = [term for term in fields if term.strip().lstrip("-") not in allowed]
        if unknown:
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Unknown ordering {', '.join(map(repr, unknown))}; one of: "
                        f"{', '.join(allowed)} (prefix - for descending)."
                    ]
                }
            )
        return [term.strip() for term in fields]
