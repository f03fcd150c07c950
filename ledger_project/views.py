"""The project's own pages: ``/`` says where things are (the admin's "View site" link)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Shared Ledger</title></head>
<body>
<h1>Shared Ledger</h1>
<p>User credits for several products, kept in ledgers that share one core.</p>
<ul>{}</ul>
</body>
</html>
"""


def home(request: HttpRequest) -> HttpResponse:
    """A small HTML page linking the admin, the API docs and the health check."""
    links = [
        (reverse("admin:index"), "Admin", "balances and entries of every ledger"),
        (reverse("api-docs"), "API docs", "Swagger UI for the whole REST API"),
        (reverse("api-schema"), "OpenAPI schema", "the machine-readable API description"),
        (reverse("healthz"), "Health check", "200 when the database answers"),
    ]
    items = format_html_join("", '<li><a href="{}">{}</a>: {}</li>', links)
    return HttpResponse(format_html(_PAGE, items))
