"""Template tags of the ledger admin: the pagination of lists over big tables."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.admin_list import pagination

register = template.Library()


@register.inclusion_tag("admin/core_ledger/big_pagination.html")
def big_pagination(cl: Any) -> dict[str, Any]:
    """Django's page links, the count as the paginator found it (exact, "about" or "more
    than"), and the keyset links (older rows, back to the newest) of a
    :class:`core_ledger.admin.BigChangeList`."""
    return pagination(cl)
