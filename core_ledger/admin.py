"""Admin base classes shared by every ledger, and the ledger panel on the user change page.

A ledger app registers its two models in a few lines (see ``app_alpha/admin.py``)::

    admin.site.register(AlphaEntry, EntryAdmin)
    admin.site.register(AlphaBalance, BalanceAdmin)

The admin is thin: entries and balances are read-only for everyone (the database refuses
UPDATE and DELETE on entries anyway); the "Reverse selected entries" action and the "Post entry"
form each make one service call per entry and show the service's refusals. What a staff user
sees and does is set by the ledger's permissions, never by ``is_staff`` alone: the view
permissions of the entry and balance models open the pages, ``post_any_entry`` the "Post entry"
form and ``reverse_entry`` the reverse action (``manage.py ledger_operators`` grants them all).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from core_ledger import (
    token_admin,  # noqa: F401  # pyright: ignore[reportUnusedImport]  # registers the API token admin
)
from core_ledger.exceptions import LedgerError
from core_ledger.ledger import AnyLedger, PostedBy, registry
from core_ledger.models import DESCRIPTION_MAX_LENGTH, IDEMPOTENCY_KEY_MAX_LENGTH, AbstractHold
from core_ledger.operations import SharedOperation
from core_ledger.routing import lag_tolerant
from core_ledger.selectors import (
    DESCRIPTION_SEARCH_MIN,
    BoundedCount,
    available_get,
    balance_get,
    balance_snapshot,
    count_bounded,
    entry_search,
    hold_status_filter,
    ledger_totals_cached,
    page_rows,
    user_find,
    user_search,
    username_field,
)
from core_ledger.services import entry_post, entry_reverse, hold_release
from core_ledger.services.holds import effective_status
from core_ledger.services.policy import can_reverse, is_privileged

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
    _Paginator = Paginator[Any]
else:  # generic in the stubs only: not subscriptable at run time
    _ModelAdmin = admin.ModelAdmin
    _Paginator = Paginator


def admin_url(model: type[Any], view: str, *args: Any) -> str | None:
    """The admin URL of ``model``'s ``view`` (changelist, change, post), or None if unregistered."""
    opts = model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)
    except NoReverseMatch:
        return None


def entries_url(ledger: AnyLedger, user_id: int) -> str | None:
    """The ledger's entries changelist filtered to one user."""
    url = admin_url(ledger.entry_model, "changelist")
    return f"{url}?user__id__exact={user_id}" if url else None


def user_search_fields() -> tuple[str, ...]:
    """``user__<USERNAME_FIELD>`` and ``user__<EMAIL_FIELD>`` (if the user model has that field)."""
    User = get_user_model()
    names = [username_field(), User.get_email_field_name()]
    concrete = {f.name for f in User._meta.get_fields() if getattr(f, "concrete", False)}
    return tuple(f"user__{name}" for name in dict.fromkeys(names) if name in concrete)


# --- big tables: counts, pages and cursors that stay flat at any size ----------------------------


class LargeTablePaginator(_Paginator):
    """A paginator for tables of millions of rows.

    - It never runs ``COUNT(*)`` over the table: it counts at most ``count_cap`` + 1 rows, and
      past that shows the planner's estimate (unfiltered) or "more than" (filtered): see
      :func:`core_ledger.selectors.count_bounded`.
    - A page is read by a deferred join (the offset walks the ordering index only, see
      :func:`core_ledger.selectors.page_rows`), and page numbers stop at ``max_pages``: past
      that, the changelist's "older" link pages by cursor (see :class:`BigTableAdminMixin`).
    """

    count_cap = 10_000
    max_pages = 1_000

    @property
    def queryset(self) -> QuerySet[Any]:
        rows = self.object_list
        assert isinstance(rows, QuerySet), "LargeTablePaginator pages querysets"
        return rows

    @cached_property
    def bounded_count(self) -> BoundedCount:
        # At least a page: a count under the page size would show the unsliced queryset.
        return count_bounded(self.queryset, cap=max(self.count_cap, self.per_page))

    @cached_property
    def count(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]  # Django's is a cached_property too
        return self.bounded_count.value

    @cached_property
    def num_pages(self) -> int:  # pyright: ignore[reportIncompatibleVariableOverride]
        if self.count == 0 and not self.allow_empty_first_page:
            return 0
        pages = math.ceil(max(1, self.count - self.orphans) / self.per_page)
        return min(pages, self.max_pages)

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        start = (number - 1) * self.per_page
        return Page(page_rows(self.queryset, start=start, stop=start + self.per_page), number, self)

    @property
    def count_text(self) -> str:
        """ "1,234", "about 10,000,000" or "more than 10,000", for the page."""
        value = f"{self.bounded_count.value:,}"
        if self.bounded_count.kind == "estimate":
            return f"about {value}"
        if self.bounded_count.kind == "more_than":
            return f"more than {self.bounded_count.value - 1:,}"
        return value


CURSOR_VAR = "cursor"


class BigChangeList(ChangeList):
    """Django's changelist plus a keyset cursor: ``?cursor=<pk>`` continues the list after that
    row when it is ordered by primary key (either way), with every filter and search kept."""

    def get_filters_params(self, params: Any = None) -> Any:
        lookup_params = super().get_filters_params(params)
        lookup_params.pop(CURSOR_VAR, None)  # ours, not a field lookup
        return lookup_params

    def pk_direction(self, queryset: QuerySet[Any]) -> str | None:
        """ "desc" or "asc" when the list is ordered by primary key first, else None."""
        order = list(queryset.query.order_by)
        if not order or not isinstance(order[0], str):
            return None
        first = order[0]
        name = first.lstrip("-")
        pk = self.model._meta.pk
        assert pk is not None
        if name not in ("pk", pk.name, pk.attname):
            return None
        return "desc" if first.startswith("-") else "asc"

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        self.cursor_direction = self.pk_direction(queryset)
        raw = self.params.get(CURSOR_VAR)
        if raw and self.cursor_direction:
            if not str(raw).isdigit() or int(raw) > 2**63 - 1:
                raise IncorrectLookupParameters(f"cursor {raw!r} is not a row id")
            lookup = "pk__lt" if self.cursor_direction == "desc" else "pk__gt"
            queryset = queryset.filter(**{lookup: int(raw)})
        return queryset

    @cached_property
    def next_cursor_url(self) -> str | None:
        """The link to the rows after this page (a keyset cursor), when there are any."""
        if not self.cursor_direction or not self.multi_page:
            return None
        rows = list(self.result_list)
        if len(rows) < self.list_per_page:
            return None
        return self.get_query_string({CURSOR_VAR: rows[-1].pk}, [PAGE_VAR])

    @property
    def first_url(self) -> str | None:
        """Back to the start of the list, when a cursor is set."""
        if CURSOR_VAR not in self.params:
            return None
        return self.get_query_string(remove=[CURSOR_VAR, PAGE_VAR])


def _lot_moves_text(moves: list[list[Any]], *, signed: bool) -> str:
    """``lot_moves`` for a person: ``+5 lot #12, -3 never-expiring credits`` (signed), or the
    credits taken without their sign (a hold's reservation)."""
    return ", ".join(
        f"{f'{delta:+d}' if signed else -delta} "
        f"{'never-expiring credits' if lot is None else f'lot #{lot}'}"
        for lot, delta in moves
    )


class BigTableAdminMixin(_ModelAdmin):
    """For changelists over tables that grow for years (entries, balances, lots, holds, events).

    Put it first: ``class HoldAdmin(BigTableAdminMixin, LedgerModelAdmin)``. It brings the
    :class:`LargeTablePaginator` (no ``COUNT(*)``, deferred-join pages, page numbers capped),
    a keyset "older rows" link (``?cursor=<pk>``) for lists ordered by primary key, no full
    result count, and a pagination block that says which count it shows. Use it with
    ``change_list_template`` extending ``admin/core_ledger/big_change_list.html``, filters that
    indexes serve, ``sortable_by`` limited to indexed orderings, and no ``date_hierarchy``.
    """

    paginator = LargeTablePaginator
    show_full_result_count = False
    date_hierarchy = None
    change_list_template = "admin/core_ledger/big_change_list.html"

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return BigChangeList

    def action_checkbox(self, obj: Any) -> SafeString:
        # Django renders a form widget template per row: a third of a 100-row page's time. The
        # same HTML, formatted directly.
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" '
            'aria-label="Select this object for an action - {}">',
            ACTION_CHECKBOX_NAME,
            obj.pk,
            str(obj),
        )


class LedgerModelAdmin(_ModelAdmin):
    """Read-only for everyone; visible with the model's view permission (Django's own rule).

    Subclassed by the entry and balance admins.
    """

    def get_ledger(self) -> AnyLedger:
        return registry.for_model(self.model)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_search_fields(self, request: HttpRequest) -> Any:
        # The user's login and email, whatever the user model calls them (no ``username``
        # assumed), then the admin's own fields.
        return (*user_search_fields(), *super().get_search_fields(request))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"ledger": self.get_ledger(), **(extra_context or {})}
        if request.method != "GET":  # actions write: the primary
            return super().changelist_view(request, extra_context=context)

        def read() -> HttpResponse:
            response = super(LedgerModelAdmin, self).changelist_view(request, context)
            # Rendered here: queries that run only while the template renders (list_display
            # columns, filters) then run in the lag-tolerant scope too, not after it.
            render = getattr(response, "render", None)
            if render is not None:
                render()
            return response

        # A list of many users' rows: a replica's small lag is fine (core_ledger.routing).
        return lag_tolerant(read)


# --- entries ------------------------------------------------------------------------------------


def _with_signed_amount(entry: Any) -> Any:
    """The entry with ``signed_amount`` ("+10", "-3"), as the list shows amounts."""
    entry.signed_amount = f"{entry.amount:+d}"
    return entry


class ReverseEntriesForm(forms.Form):
    reason = forms.CharField(
        max_length=DESCRIPTION_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Stored as the description of each reversal entry.",
    )


class PostEntryForm(forms.Form):
    """Shape only; the service decides what is allowed and its refusals become form errors."""

    user = forms.CharField(max_length=150, help_text="Username or user id.")
    operation = forms.ChoiceField()
    amount = forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Positive whole credits; the operation gives the sign. Empty for fixed amounts.",
    )
    description = forms.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False)
    idempotency_key = forms.CharField(
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        required=False,
        help_text="Optional: a resubmission with the same key posts nothing new.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        help_text="Credits only: when these credits lapse (e.g. 2027-01-31 00:00). Empty: the "
        "operation's lifetime, or never.",
    )

    def __init__(self, *args: Any, ledger: AnyLedger, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger = ledger
        field = self.fields["operation"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [
            (value, f"{label} ({self._describe(value)})")
            for value, label in ledger.operations.choices
            if ledger.rule(value).posted_by is not PostedBy.SYSTEM
        ]

    def _describe(self, operation: str) -> str:
        rule = self.ledger.rule(operation)
        direction = rule.direction.value if rule.direction else "reversal"
        fixed = self.ledger.fixed_amount(operation)
        return f"{direction}, fixed {fixed}" if fixed else direction

    def clean_user(self) -> Any:
        user = user_find(text=self.cleaned_data["user"])
        if user is None:
            raise forms.ValidationError("No user with this username or id.")
        return user

    def add_ledger_error(self, exc: LedgerError) -> None:
        """Show the service's refusal on the fields it names, else above the form."""
        placed = False
        for name, problems in exc.details.items():
            if name in self.fields and isinstance(problems, list):
                for problem in problems:
                    self.add_error(name, str(problem))
                placed = True
        if not placed or exc.code != "validation_error":
            self.add_error(None, f"{exc.message} ({exc.code})")


class EntryAdmin(BigTableAdminMixin, LedgerModelAdmin):
    """Read-only entries of one ledger, with the reverse action and the post form.

    Built for ledgers of tens of millions of entries (see :class:`BigTableAdminMixin`): newest
    first by id, filters and a search box that each use an index (:func:`entry_search`), a
    time-range filter instead of a date hierarchy, sorting by id only.
    """

    list_display = (
        "id",
        "user",
        "operation",
        "signed_amount",
        "balance_after",
        "created_at",
        "reversed_flag",
    )
    list_display_links = ("id",)
    # Each served by an index: (operation, id), BRIN on created_at, (user, id) for the user
    # filter that the balance and user pages link to (?user__id__exact=).
    list_filter = ("operation", ("created_at", admin.DateFieldListFilter))
    search_fields = ("=idempotency_key",)  # shows the box; entry_search decides what matches
    search_help_text = (
        "#id, or digits (entry id, user id or key); a username, or its start; an idempotency "
        f"key (exact); or words of the description (at least {DESCRIPTION_SEARCH_MIN} "
        "characters, trigram index)."
    )
    sortable_by = ("id",)  # any other order would sort the whole table
    list_select_related = ("user",)
    list_per_page = 100
    actions = ["reverse_selected"]
    change_list_template = "admin/core_ledger/entry_change_list.html"
    fields = (
        "id",
        "user",
        "operation",
        "signed_amount",
        "balance_after",
        "created_at",
        "day",
        "description",
        "metadata",
        "idempotency_key",
        "reverses",
        "reversed_by_link",
        "created_by",
        "expires_at",
        "drawn_from",
        "hold",
    )
    readonly_fields = fields

    @admin.display(description="lots moved")
    def drawn_from(self, obj: Any) -> str:
        """Which lots the entry drew from (debits) or gave back to (reversals), in order."""
        return _lot_moves_text(obj.lot_moves, signed=True) if obj.lot_moves else "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return entry_search(queryset, term=search_term), False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The reversing entry's id in the page's own query (the unique index on reverses_id),
        # not one query per row.
        reversals = self.model._default_manager.filter(reverses=OuterRef("pk")).values("pk")[:1]
        annotated: QuerySet[Any] = (
            super().get_queryset(request).annotate(reversal_id=Subquery(reversals))
        )
        return annotated

    @admin.display(description="amount", ordering="amount")
    def signed_amount(self, obj: Any) -> str:
        return f"{obj.amount:+d}"

    @admin.display(description="reversed by")
    def reversed_flag(self, obj: Any) -> str:
        """A link to the reversal on the few reversed rows; blank on the rest (not a red ✗ on
        nearly every row, which read as an error)."""
        reversal_id = getattr(obj, "reversal_id", None)
        if reversal_id is None:
            return ""
        url = admin_url(self.model, "change", reversal_id)
        return format_html('↩ <a href="{}">#{}</a>', url, reversal_id)

    @admin.display(description="reversed by")
    def reversed_by_link(self, obj: Any) -> str:
        reversal = self.model._default_manager.filter(reverses=obj).only("pk").first()
        if reversal is None:
            return "—"
        url = admin_url(self.model, "change", reversal.pk)
        return format_html('<a href="{}">#{}</a>', url, reversal.pk)

    # --- reverse action ---------------------------------------------------------------------

    def has_reverse_permission(self, request: HttpRequest) -> bool:
        return can_reverse(self.get_ledger(), request.user)

    def has_post_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and is_privileged(self.get_ledger(), request.user)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"can_post": self.has_post_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    @admin.action(description="Reverse selected entries", permissions=["reverse"])
    def reverse_selected(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        """Ask for a reason, then reverse each entry through the service; report per entry."""
        ledger = self.get_ledger()
        form = ReverseEntriesForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            done: list[str] = []
            refused: list[str] = []
            for entry_id in queryset.order_by("id").values_list("id", flat=True):
                try:
                    reversal = entry_reverse(
                        ledger=ledger, entry_id=entry_id, reason=reason, actor=request.user
                    )
                except LedgerError as exc:
                    refused.append(f"#{entry_id}: {exc.message} ({exc.code})")
                else:
                    done.append(f"#{entry_id} by #{reversal.pk}")
            if done:
                self.message_user(
                    request, f"Reversed {len(done)} entries: {', '.join(done)}.", messages.SUCCESS
                )
            for refusal in refused:
                self.message_user(request, f"Not reversed {refusal}", messages.ERROR)
            return None  # back to the changelist
        context = {
            **self.admin_site.each_context(request),
            "title": "Reverse entries",
            "opts": self.model._meta,
            "ledger": ledger,
            "form": form,
            "entries": [
                _with_signed_amount(entry)
                for entry in queryset.select_related("user").order_by("id")
            ],
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "action": "reverse_selected",
        }
        return TemplateResponse(request, "admin/core_ledger/reverse_entries.html", context)

    # --- post form --------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        return [
            path(
                "post/",
                self.admin_site.admin_view(self.post_entry_view),
                name=f"{opts.app_label}_{opts.model_name}_post",
            ),
            *super().get_urls(),
        ]

    def post_entry_view(self, request: HttpRequest) -> HttpResponse:
        """Staff form that posts one entry through the service, as the signed-in user."""
        ledger = self.get_ledger()
        if not self.has_post_permission(request):
            raise PermissionDenied  # the ledger's post_any_entry, not is_staff
        target_user: Any = None
        current_balance: int | None = None
        if request.method == "POST":
            form = PostEntryForm(request.POST, ledger=ledger)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    result = entry_post(
                        ledger=ledger,
                        user_id=data["user"].pk,
                        operation=ledger.operation(data["operation"]),
                        amount=data["amount"],
                        actor=request.user,
                        idempotency_key=data["idempotency_key"] or None,
                        description=data["description"],
                        expires_at=data["expires_at"],
                    )
                except LedgerError as exc:
                    form.add_ledger_error(exc)
                    target_user = data["user"]
                    current_balance = balance_get(ledger=ledger, user_id=target_user.pk)
                else:
                    entry = result.entry
                    verb = "Replayed (nothing new posted)" if result.replayed else "Posted"
                    self.message_user(
                        request,
                        f"{verb} entry #{entry.pk}: {entry.operation} {entry.amount:+d} for "
                        f"{data['user']}, balance now {entry.balance_after}.",
                        messages.WARNING if result.replayed else messages.SUCCESS,
                    )
                    return HttpResponseRedirect(entries_url(ledger, data["user"].pk) or "../")
        else:
            form = PostEntryForm(
                initial={
                    "user": request.GET.get("user", ""),
                    "operation": SharedOperation.CREDIT_ADD,
                },
                ledger=ledger,
            )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Post an entry to {ledger.name}",
            "opts": self.model._meta,
            "ledger": ledger,
            "form": form,
            # After a refusal: what the user holds now, so the operator sees why.
            "target_user": target_user,
            "current_balance": current_balance,
        }
        return TemplateResponse(request, "admin/core_ledger/post_entry.html", context)


# --- balances -----------------------------------------------------------------------------------


class BalanceAdmin(BigTableAdminMixin, LedgerModelAdmin):
    """Balances of one ledger in user id order, with the ledger's totals above the list.

    Built for millions of users (see :class:`BigTableAdminMixin`): ordered by the primary key
    (no index on ``balance``, which would cost every post its HOT update), searched by one
    user's username or id, totals cached for ``totals_cache_seconds``. ``manage.py
    ledger_balance --top N`` lists the largest balances.
    """

    list_display = (
        "user",
        "balance",
        "held",
        "available",
        "next_expiry",
        "updated_at",
        "entries_link",
    )
    list_select_related = ("user",)
    ordering = ("pk",)
    sortable_by = ("user",)
    search_fields = ("=user__id",)  # shows the box; user_search decides what matches
    search_help_text = "A username, or its start (case-sensitive), or a user id."
    list_per_page = 100
    totals_cache_seconds = 60
    change_list_template = "admin/core_ledger/balance_change_list.html"
    fields = (
        "user",
        "balance",
        "held",
        "available",
        "lot_credits",
        "next_expiry",
        "updated_at",
        "entries_link",
    )
    readonly_fields = fields

    @admin.display(description="available")
    def available(self, obj: Any) -> int:
        """The balance less held, less credits expired but not yet written down (a read only
        when a lot or a hold has expired since the last write)."""
        now = timezone.now()
        if (obj.next_expiry is None or obj.next_expiry > now) and (
            obj.next_hold_expiry is None or obj.next_hold_expiry > now
        ):
            return int(obj.balance) - int(obj.held)
        return available_get(ledger=self.get_ledger(), user_id=obj.user_id)

    @admin.display(description="entries")
    def entries_link(self, obj: Any) -> str:
        url = entries_url(self.get_ledger(), obj.user_id)
        return format_html('<a href="{}">entries</a>', url) if url else "—"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return user_search(queryset, term=search_term), False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        totals, totals_at = ledger_totals_cached(
            ledger=self.get_ledger(), seconds=self.totals_cache_seconds
        )
        context = {"totals": totals, "totals_at": totals_at, **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)


# --- lots ---------------------------------------------------------------------------------------


class LotAdmin(BigTableAdminMixin, LedgerModelAdmin):
    """Read-only lots of one ledger: what is left of each expiring credit, and until when.

    In expiry order on the (expires_at, entry) index; searched by one user (the (user,
    expires_at) index); see :class:`BigTableAdminMixin`.
    """

    list_display = ("entry_link", "user", "amount", "remaining", "expires_at", "state")
    list_select_related = ("user",)
    list_filter = (("expires_at", admin.DateFieldListFilter),)
    ordering = ("expires_at", "entry_id")
    sortable_by = ("expires_at",)
    search_fields = ("=user__id",)
    search_help_text = "A username, or its start (case-sensitive), or a user id."
    list_per_page = 100

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        return user_search(queryset, term=search_term), False

    fields = ("entry_link", "user", "amount", "remaining", "expires_at", "state")
    readonly_fields = fields

    @admin.display(description="credit entry", ordering="entry_id")
    def entry_link(self, obj: Any) -> str:
        url = admin_url(self.get_ledger().entry_model, "change", obj.entry_id)
        return format_html('<a href="{}">#{}</a>', url, obj.entry_id) if url else f"#{obj.entry_id}"

    @admin.display(description="state")
    def state(self, obj: Any) -> str:
        if obj.remaining == 0:
            return "used up or written down"
        if obj.expires_at <= timezone.now():
            return "expired (EXPIRY not written yet)"
        return "open"


# --- users: a ledger panel on the change page ---------------------------------------------------


# The mixin's super() calls go to a ModelAdmin; type-checkers see that base, the runtime MRO the
# host's own admin class.
if TYPE_CHECKING:
    _UserAdminBase = admin.ModelAdmin[Any]
else:
    _UserAdminBase = object


class LedgerUserAdminMixin(_UserAdminBase):
    """The user's balance in every registered ledger, with links, on the user change page.

    Put it first on your own user admin; the core registers and unregisters nobody's admin::

        @admin.register(User)
        class UserAdmin(LedgerUserAdminMixin, django.contrib.auth.admin.UserAdmin): ...

    It works with any user model and any ``ModelAdmin`` (with or without ``fieldsets``): the
    "Ledgers" panel comes right after the first fieldset, on the change page only.
    """

    ledger_fieldset_title = "Ledgers"

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # The panel shows only the ledgers this viewer may see (display callables get no
            # request; the object is this request's own).
            obj._ledger_viewer = request.user
        return obj

    @staticmethod
    def _visible_ledgers(viewer: Any) -> list[AnyLedger]:
        return [
            ledger
            for ledger in registry
            if viewer is not None
            and (
                viewer.has_perm(ledger.view_all_permission)
                or viewer.has_perm(
                    f"{ledger.app_label}.view_{ledger.balance_model._meta.model_name}"
                )
            )
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None or "ledger_balances" in fields:
            return fields
        return (*fields, "ledger_balances")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        # A ModelAdmin without fieldsets lists every readonly field in its one fieldset: the
        # panel goes in its own fieldset instead, not twice.
        others = [
            (name, {**opts, "fields": [f for f in opts["fields"] if f != "ledger_balances"]})
            for name, opts in fieldsets
        ]
        # First, right under the login: what an operator opens a user's page for.
        first, *rest = others
        return [first, (self.ledger_fieldset_title, {"fields": ("ledger_balances",)}), *rest]

    @admin.display(description="balances")
    def ledger_balances(self, obj: Any) -> SafeString:
        viewer = getattr(obj, "_ledger_viewer", None)
        rows = []
        for ledger in self._visible_ledgers(viewer):
            snapshot = balance_snapshot(ledger=ledger, user_id=obj.pk)
            expiring = ", ".join(
                f"{lot.amount} on {lot.expires_at:%Y-%m-%d %H:%M}" for lot in snapshot.expiring[:3]
            )
            balance_url = admin_url(ledger.balance_model, "change", obj.pk)
            if balance_url and not ledger.balance_model._default_manager.filter(pk=obj.pk).exists():
                balance_url = None
            post_url = (
                admin_url(ledger.entry_model, "post") if is_privileged(ledger, viewer) else None
            )
            rows.append(
                (
                    ledger.name,
                    snapshot.balance,
                    snapshot.held,
                    snapshot.available,
                    expiring or "—",
                    format_html('<a href="{}">balance</a>', balance_url) if balance_url else "",
                    format_html('<a href="{}">entries</a>', entries_url(ledger, obj.pk) or "#"),
                    format_html('<a href="{}?user={}">post an entry</a>', post_url, obj.pk)
                    if post_url
                    else "",
                )
            )
        if not rows:
            return format_html("{}", "No ledger you may see.")
        body = format_html_join(
            "",
            "<tr><td>{}</td><td class='ledger-balance'>{}</td><td class='ledger-held'>{}</td>"
            "<td class='ledger-available'>{}</td>"
            "<td class='ledger-expiring'>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rows,
        )
        return format_html(
            "<table class='ledger-balances'><thead><tr><th>ledger</th><th>balance</th>"
            "<th>held</th><th>available</th><th>next expirations</th><th colspan='3'></th></tr></thead>"
            "<tbody>{}</tbody></table>",
            body,
        )


# --- holds --------------------------------------------------------------------------------------


class HoldStatusFilter(admin.SimpleListFilter):
    """The status as callers see it: a pending hold past its expiry is listed as expired."""

    title = "status"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, str(label)) for value, label in AbstractHold.Status.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return hold_status_filter(queryset, value) if value else queryset


class HoldAdmin(BigTableAdminMixin, LedgerModelAdmin):
    """Holds of one ledger: who, what, how much, until when; release through the service.

    Built for tables that grow for years (:class:`BigTableAdminMixin`): newest first by primary
    key, no count of the whole table, no date hierarchy; search by the user or an exact
    idempotency key (both indexed)."""

    list_display = (
        "id",
        "user",
        "operation",
        "amount",
        "shown_status",
        "captured_amount",
        "expires_at",
        "created_at",
        "entry_link",
    )
    list_display_links = ("id",)
    list_filter = (HoldStatusFilter, "operation", ("expires_at", admin.DateFieldListFilter))
    search_fields = ("=idempotency_key",)  # and the user's: see get_search_fields
    list_select_related = ("user",)
    list_per_page = 100
    sortable_by = ("id",)
    actions = ["release_selected"]
    fields = (
        "id",
        "user",
        "operation",
        "amount",
        "shown_status",
        "captured_amount",
        "entry_link",
        "expires_at",
        "created_by",
        "created_at",
        "resolved_at",
        "description",
        "metadata",
        "idempotency_key",
        "reserved_from",
    )
    readonly_fields = fields

    @admin.display(description="status", ordering="status")
    def shown_status(self, obj: Any) -> str:
        return effective_status(obj, timezone.now())

    @admin.display(description="capture entry", ordering="entry_id")
    def entry_link(self, obj: Any) -> str:
        if obj.entry_id is None:
            return "—"
        url = admin_url(self.get_ledger().entry_model, "change", obj.entry_id)
        return format_html('<a href="{}">#{}</a>', url, obj.entry_id) if url else f"#{obj.entry_id}"

    @admin.display(description="reserved from")
    def reserved_from(self, obj: Any) -> str:
        if not obj.lot_moves:
            return "credits that never expire"
        return _lot_moves_text(obj.lot_moves, signed=False)

    def has_release_permission(self, request: HttpRequest) -> bool:
        # The service decides per hold (the caller who placed it, or post_any_entry).
        return self.has_view_permission(request)

    @admin.action(description="Release selected holds", permissions=["release"])
    def release_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """Release each hold through the service, as the signed-in user; report per hold."""
        ledger = self.get_ledger()
        done: list[str] = []
        for hold_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                hold_release(ledger=ledger, hold_id=hold_id, actor=request.user)
            except LedgerError as exc:
                self.message_user(
                    request, f"Not released #{hold_id}: {exc.message} ({exc.code})", messages.ERROR
                )
            else:
                done.append(f"#{hold_id}")
        if done:
            self.message_user(
                request, f"Released {len(done)} holds: {', '.join(done)}.", messages.SUCCESS
            )


# Registers the events and webhooks admin, which builds on BigTableAdminMixin above.
from core_ledger import (  # noqa: E402
    webhook_admin,  # noqa: F401  # pyright: ignore[reportUnusedImport]
)
