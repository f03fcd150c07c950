"""Bench-only settings: the project's settings, plus a URLconf with the REST baseline view.

Only the bench's gunicorn and worker processes use this module (DJANGO_SETTINGS_MODULE), so the
production URLs never carry the trivial view.
"""

from ledger_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
