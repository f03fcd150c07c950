"""The project's front door: ``GET /`` links the admin, the API docs and /healthz (the admin's
"View site" goes there), and ``make help`` lists every target."""

from __future__ import annotations

import os
import re
import subprocess
from typing import Any

import pytest
from django.conf import settings
from django.test import Client


@pytest.mark.django_db
def test_home_page_links_admin_docs_and_health() -> None:
    response = Client().get("/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for href in ("/admin/", "/api/docs/", "/healthz"):
        assert f'href="{href}"' in html, href


@pytest.mark.django_db
def test_admin_view_site_points_to_the_home_page(admin_client: Any) -> None:
    html = admin_client.get("/admin/").content.decode()
    assert re.search(r'<a href="/">View site</a>', html), html[:2000]


def test_make_help_lists_every_target() -> None:
    makefile = (settings.BASE_DIR / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)
    assert phony is not None
    targets = set(phony.group(1).split()) - {"help"}
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=settings.BASE_DIR,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    missing = [
        t for t in sorted(targets) if not re.search(rf"(?<![\w-]){t}(?![\w-])", result.stdout)
    ]
    assert not missing, result.stdout
    # What make serve turns off, said where people look.
    assert "SSL redirect" in result.stdout
