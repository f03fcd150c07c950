"""Settings for Shared Ledger: one module, configured from the environment (django-environ).

Defaults are safe for production (``DEBUG`` off, secure cookies, HSTS, SSL redirect); ``make run``
supplies the development values. See ``.env.example`` for every variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG: bool = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="django-insecure-dev-only-not-for-production")
else:
    try:
        SECRET_KEY = env.str("SECRET_KEY")
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off "
            "(e.g. export SECRET_KEY=$(openssl rand -hex 32))."
        ) from exc

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    "core_ledger",
    "app_alpha",
    "app_beta",
]

MIDDLEWARE = [
    # First: one log line per request (its whole duration), X-Request-ID on every response.
    "core_ledger.request_log.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Outermost but security: turns any HTML 404 under /api/ (DEBUG's page) into the JSON shape.
    "ledger_project.middleware.ApiNotFoundMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise: static files never open a database connection.
    "core_ledger.middleware.RequestTimeoutsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ledger_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "ledger_project.wsgi.application"
ASGI_APPLICATION = "ledger_project.asgi.application"


def _database_url() -> str:
    """``DATABASE_URL``, else the embedded server of this checkout if it is running."""
    url = env.str("DATABASE_URL", default="")
    if url:
        return url
    from ledger_project.devdb import running_url

    url = running_url() or ""
    if not url:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set and the embedded PostgreSQL is not running. "
            "Run `make run` / `make test` (they start it), or `make db-start`, or set DATABASE_URL."
        )
    return url


# Connection pooling, two ways (README "Scaling out"):
# - DATABASE_POOL=1: Django's own psycopg pool in each process (OPTIONS["pool"]); connections are
#   returned to the pool after each request instead of being kept per thread (CONN_MAX_AGE).
# - DATABASE_PGBOUNCER=1: DATABASE_URL points at PgBouncer in transaction mode, where a server
#   connection serves another client after every transaction: no prepared statements (PgBouncer
#   1.18 cannot keep them), no server-side cursors, no session settings (request timeouts come
#   from the role's or database's own settings instead, see below).
DATABASE_POOL: bool = env.bool("DATABASE_POOL", default=False)
DATABASE_PGBOUNCER: bool = env.bool("DATABASE_PGBOUNCER", default=False)


def _database(url: str) -> dict[str, Any]:
    config: dict[str, Any] = env.db_url_config(url)
    # A Unix-socket directory arrives percent-encoded in the URL's host part (the embedded server).
    config["HOST"] = unquote(config.get("HOST", ""))
    if config["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "Shared Ledger runs on PostgreSQL only: DATABASE_URL must be postgres://…"
        )
    config["CONN_HEALTH_CHECKS"] = True
    # The URL's own OPTIONS (e.g. ?sslmode=require&options=-c%20search_path%3Dledger) stay as
    # given: timeouts are not connection options, since migrate and long commands need others.
    config.setdefault("OPTIONS", {})
    if DATABASE_POOL:
        # Django refuses persistent connections beside its pool: the pool keeps them instead.
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=10),
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
        }
    else:
        config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    if DATABASE_PGBOUNCER:
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
    return config


DATABASES = {"default": _database(_database_url())}
# Read replicas (streaming standbys of the primary), comma-separated: aliases replica_1, ….
# Only lag-tolerant reads go there (core_ledger.routing); a replica that is down or further
# behind than REPLICA_MAX_LAG_SECONDS is skipped and the read goes to the primary.
for _n, _url in enumerate(env.list("DATABASE_REPLICA_URLS", default=[]), start=1):
    _replica = _database(_url)
    # A replica that is unreachable must cost a request seconds at most, not a hang.
    _replica["OPTIONS"].setdefault("connect_timeout", env.int("REPLICA_CONNECT_TIMEOUT", 2))
    # The test runner makes no database there: in tests a replica alias is the test database.
    _replica["TEST"] = {"MIRROR": "default"}
    DATABASES[f"replica_{_n}"] = _replica
SHARED_LEDGER_READ_REPLICAS = [alias for alias in DATABASES if alias != "default"]
DATABASE_ROUTERS = ["core_ledger.routing.ReplicaRouter"] if SHARED_LEDGER_READ_REPLICAS else []
SHARED_LEDGER_REPLICA_MAX_LAG_SECONDS: float = env.float("REPLICA_MAX_LAG_SECONDS", default=5.0)
SHARED_LEDGER_REPLICA_CHECK_SECONDS: float = env.float("REPLICA_CHECK_SECONDS", default=1.0)
SHARED_LEDGER_PREPARED_STATEMENTS: bool = not DATABASE_PGBOUNCER
# A hot row must never hang a request: waits beyond these give a clean 503 (see exceptions.py).
# Requests only (core_ledger.middleware.RequestTimeoutsMiddleware); commands set their own.
# Behind PgBouncer a session SET would stick to a server connection other clients share next: set
# them on the role instead (ALTER ROLE ledger SET lock_timeout = '5s'; statement_timeout = '30s').
SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS: int | None = (
    None if DATABASE_PGBOUNCER else env.int("DB_LOCK_TIMEOUT_MS", default=5000)
)
SHARED_LEDGER_REQUEST_STATEMENT_TIMEOUT_MS: int | None = (
    None if DATABASE_PGBOUNCER else env.int("DB_STATEMENT_TIMEOUT_MS", default=30000)
)
DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME", default="test_shared_ledger")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's ModelBackend with a user's permissions read in one query (core_ledger/backends.py).
AUTHENTICATION_BACKENDS = ["core_ledger.backends.ModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# --- Security: production defaults follow from DEBUG being off -------------------------------
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# /healthz answers over plain HTTP so load balancers can probe the process directly.
# So do /readyz and /metrics (probes and Prometheus scrape the process directly).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- REST framework ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an anonymous API call gets 401 with WWW-Authenticate, not 403. Tokens are
    # stored as digests, expire (API_TOKEN_TTL) and can be revoked (core_ledger.api.auth).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core_ledger.api.authentication.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's user and anon throttles, counted atomically so racing workers cannot let extra
    # requests through (core_ledger.api.throttling).
    "DEFAULT_THROTTLE_CLASSES": [
        "core_ledger.api.throttling.UserRateThrottle",
        "core_ledger.api.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("API_THROTTLE_USER", default="600/min"),
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        # The token endpoint, per client address and per username (core_ledger.api.throttling):
        # below the anonymous rate, so guessing passwords is slow whatever address is used.
        "login": env.str("API_THROTTLE_LOGIN", default="10/min"),
    },
    # Client addresses for throttling: with 0 (the default) the socket's address and never a
    # client-sent X-Forwarded-For; behind N trusted proxies, the address the Nth one saw.
    "NUM_PROXIES": env.int("NUM_PROXIES", default=0),
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core_ledger.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Shared Ledger API",
    "DESCRIPTION": "User credit ledgers that share one core. Every error has a stable `code`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from our own static files (drf-spectacular-sidecar): /api/docs/ works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The event feed's `type` (filter and field) by its own name, not a generic "TypeEnum".
    "ENUM_NAME_OVERRIDES": {"EventTypeEnum": "core_ledger.triggers.EVENT_TYPES"},
    # The core's hooks: fixed-amount operations forbid `amount`; links chain post → entry → reverse.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core_ledger.api.schema.describe_post_bodies",
        "core_ledger.api.schema.add_links",
    ],
    # 3.1: JSON Schema 2020-12, so the metadata key limits (propertyNames) can be said.
    "OAS_VERSION": "3.1.0",
}


def _cache_config(url: str) -> dict[str, object]:
    """``CACHE_URL`` as a cache config (django-environ), e.g. ``redis://host:6379/0?key_prefix=sl``.

    django-environ 0.14 lower-cases every query option for Django's ``RedisCache``, including the
    top-level ones (``key_prefix``, ``timeout``, ``version``); Django wants those upper-case.
    """
    config: dict[str, object] = env.cache_url_config(url)
    for key in ("key_prefix", "timeout", "version", "key_function"):
        if key in config:
            config[key.upper()] = config.pop(key)
    return config


# Throttle counters live here, so production needs a cache every worker and host shares (Redis,
# Django's own RedisCache): CACHE_URL=redis://host:6379/0. The in-process default serves
# `make run` and `make test`; with DEBUG off it raises the warning core_ledger.W001.
CACHES = {"default": _cache_config(env.str("CACHE_URL", default="locmemcache://"))}

# --- Shared Ledger ----------------------------------------------------------------------------
# Fixed amounts per ledger, overriding each ledger declaration's defaults, e.g.
# SHARED_LEDGER_FIXED_AMOUNTS='{"alpha": {"SIGNUP_CREDIT": 100, "DAILY_REWARD": 10}}'
SHARED_LEDGER_FIXED_AMOUNTS: dict[str, dict[str, int]] = env.json(
    "SHARED_LEDGER_FIXED_AMOUNTS", default={}
)
# Lifetimes of credit operations in seconds (null: never expire), overriding the declarations,
# e.g. SHARED_LEDGER_EXPIRES_AFTER='{"alpha": {"DAILY_REWARD": 604800}}'
SHARED_LEDGER_EXPIRES_AFTER: dict[str, dict[str, int | None]] = env.json(
    "SHARED_LEDGER_EXPIRES_AFTER", default={}
)
# Lifetime of an API token from POST /api/auth/token/, in seconds (default 10 hours).
SHARED_LEDGER_TOKEN_TTL: int = env.int("API_TOKEN_TTL", default=10 * 60 * 60)
# Webhooks (core_ledger.conf): with DEBUG off, endpoints on private or loopback addresses are
# refused unless WEBHOOK_ALLOW_PRIVATE=1; WEBHOOK_BACKOFF is the retry schedule in seconds.
SHARED_LEDGER_WEBHOOK_ALLOW_PRIVATE: bool = env.bool("WEBHOOK_ALLOW_PRIVATE", default=False)
SHARED_LEDGER_WEBHOOK_BACKOFF: list[float] = [
    float(x)
    for x in env.list("WEBHOOK_BACKOFF", default=["10", "60", "600", "3600", "21600", "86400"])
]

# --- What operators see (README "Operating in production") ----------------------------------
# /metrics (Prometheus text format): with "Authorization: Bearer $METRICS_TOKEN", or from the
# addresses/networks in METRICS_ALLOWED_ADDRESSES (the socket's address). Neither set: 403 to all.
SHARED_LEDGER_METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
SHARED_LEDGER_METRICS_ADDRESSES: list[str] = env.list("METRICS_ALLOWED_ADDRESSES", default=[])

# One line per request from core_ledger.request_log (logger core_ledger.requests); LOG_FORMAT=json
# writes every record as one JSON object. django.request's own per-refusal warnings are left out:
# the request line already says it (refusals at INFO, 5xx at ERROR with the traceback).
LOG_FORMAT: str = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "core_ledger.request_log.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "text",
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.request": {"level": "CRITICAL"}},
}
