"""Settings of ``python -m bench.history``: the bench settings (DEBUG off), admin pages rendered
in-process by Django's test client, so static files need no ``collectstatic`` manifest."""

from bench.settings import *  # noqa: F403

STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The test client's host.
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
