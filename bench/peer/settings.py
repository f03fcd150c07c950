"""Settings of the peer's processes: django-hordak alone, on ``PEER_DATABASE_URL``.

Production-like where it matters for speed: DEBUG off (no query log), persistent connection.
"""

import os
from urllib.parse import unquote

import environ

SECRET_KEY = "bench-peer-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "mptt",
    "djmoney",
    "hordak",
]
DATABASES = {"default": environ.Env.db_url_config(os.environ["PEER_DATABASE_URL"])}
DATABASES["default"]["HOST"] = unquote(DATABASES["default"].get("HOST", ""))  # a socket folder
DATABASES["default"]["CONN_MAX_AGE"] = None
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
HORDAK_DEFAULT_CURRENCY = "EUR"
DEFAULT_CURRENCY = "EUR"
CURRENCIES = ["EUR"]
