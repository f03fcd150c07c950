"""Bench-only settings: the project's settings, plus a URLconf with the REST baseline view.

Only the bench's gunicorn and worker processes use this module (DJANGO_SETTINGS_MODULE), so the
production URLs never carry the trivial view.
"""

from ledger_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

# BENCH_PREPARED=0 runs the services without prepared statements, to measure what they bring.
SHARED_LEDGER_PREPARED_STATEMENTS = __import__("os").environ.get("BENCH_PREPARED", "1") != "0"
