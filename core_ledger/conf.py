"""Every ``SHARED_LEDGER_*`` setting of the core, its default and its type, read in one place.

Read them as ``from core_ledger.conf import app_settings; app_settings.PREPARED_STATEMENTS``
(django-allauth's ``app_settings`` shape): each property reads Django's settings the first time
it is asked, and a wrong type is reported by the system checks in :mod:`core_ledger.checks`, not
by a 500 on the first post. The raw values are then kept until Django's ``setting_changed``
signal says one changed (``override_settings``, pytest-django's ``settings``), as DRF's
``api_settings`` does: a post reads several of them, and an unset setting costs a failed
attribute look-up on Django's settings each time (about 1.4 µs).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.core.signals import setting_changed

_UNSET = object()


class AppSettings:
    """The core's settings, with their defaults. See the README's "Configuration" section."""

    prefix = "SHARED_LEDGER_"

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def _setting(self, name: str, default: Any) -> Any:
        try:
            value = self._cache[name]  # _UNSET too: a setting left unset is cached as such
        except KeyError:
            from django.conf import settings

            value = self._cache[name] = getattr(settings, self.prefix + name, _UNSET)
        return default if value is _UNSET else value

    def clear_cache(self) -> None:
        """Forget the values read so far (a setting changed)."""
        self._cache.clear()

    @property
    def FIXED_AMOUNTS(self) -> Mapping[str, Mapping[str, Any]]:
        """Per ledger label, per operation value: the amount a fixed operation posts.

        Overrides the ledger declaration, e.g. ``{"alpha": {"DAILY_REWARD": 20}}``. Default ``{}``.
        Values must be positive integers (system check ``core_ledger.E030``).
        """
        value = self._setting("FIXED_AMOUNTS", {})
        return value if isinstance(value, Mapping) else {}

    @property
    def EXPIRES_AFTER(self) -> Mapping[str, Mapping[str, Any]]:
        """Per ledger label, per credit operation: seconds its credits last (None: never).

        Overrides the declaration's ``expires_after``, e.g. ``{"alpha": {"DAILY_REWARD": 86400}}``.
        Default ``{}``.
        """
        value = self._setting("EXPIRES_AFTER", {})
        return value if isinstance(value, Mapping) else {}

    @property
    def PREPARED_STATEMENTS(self) -> bool:
        """Run the post's statements as server-side prepared statements. Default ``True``.

        Turn off behind a pooler that cannot keep them (PgBouncer in transaction mode < 1.21).
        """
        return bool(self._setting("PREPARED_STATEMENTS", True))

    @property
    def DATABASE(self) -> str | None:
        """The database alias the ledger writes to. Default ``None``: ask Django's routers
        (``DATABASE_ROUTERS``), which answer ``"default"`` when no router has an opinion."""
        value = self._setting("DATABASE", None)
        return str(value) if value else None

    @property
    def TOKEN_TTL(self) -> timedelta:
        """How long an API token lives after it is issued. Default 10 hours.

        A ``timedelta`` or a number of seconds.
        """
        value = self._setting("TOKEN_TTL", timedelta(hours=10))
        if isinstance(value, timedelta):
            return value
        return timedelta(seconds=int(value))

    @property
    def REQUEST_STATEMENT_TIMEOUT_MS(self) -> int | None:
        """``statement_timeout`` of a request's database session (ms; 0 = none; None = the
        connection's own). Default 30000. Set by ``RequestTimeoutsMiddleware``."""
        value = self._setting("REQUEST_STATEMENT_TIMEOUT_MS", 30_000)
        return None if value is None else int(value)

    @property
    def REQUEST_LOCK_TIMEOUT_MS(self) -> int | None:
        """``lock_timeout`` of a request's database session (ms; 0 = none; None = the
        connection's own). Default 5000: a busy account answers 503 ``ledger_busy``."""
        value = self._setting("REQUEST_LOCK_TIMEOUT_MS", 5_000)
        return None if value is None else int(value)

    @property
    def HOLD_EXPIRES_IN(self) -> int:
        """Seconds a hold lasts when the request gives no ``expires_in``. Default 900 (15 min).

        Holds last 1 second to 7 days; a value outside that (or not a whole number) falls back
        to the default.
        """
        value = self._setting("HOLD_EXPIRES_IN", 900)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 7 * 86400:
            return value
        return 900

    @property
    def READ_REPLICAS(self) -> tuple[str, ...]:
        """Database aliases of read replicas for lag-tolerant reads (:mod:`core_ledger.routing`).

        Default ``()``: every read goes to the primary. The project sets it from
        ``DATABASE_REPLICA_URLS``.
        """
        value = self._setting("READ_REPLICAS", ())
        return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()

    @property
    def REPLICA_MAX_LAG_SECONDS(self) -> float:
        """A replica further behind than this is skipped (reads go to the primary). Default 5."""
        return float(self._setting("REPLICA_MAX_LAG_SECONDS", 5.0))

    @property
    def REPLICA_CHECK_SECONDS(self) -> float:
        """How long a replica's state (up, lag) is trusted before it is asked again. Default 1."""
        return float(self._setting("REPLICA_CHECK_SECONDS", 1.0))

    @property
    def METRICS_TOKEN(self) -> str:
        """Bearer secret that opens ``/metrics`` (``Authorization: Bearer <token>``). Default
        ``""``: no token opens it (only ``METRICS_ADDRESSES`` can)."""
        return str(self._setting("METRICS_TOKEN", "") or "")

    @property
    def METRICS_ADDRESSES(self) -> tuple[str, ...]:
        """Client addresses or networks (``10.0.0.0/8``) that may read ``/metrics`` without the
        token; the socket's address, never a forwarded one. Default ``()``."""
        value = self._setting("METRICS_ADDRESSES", ())
        return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()

    @property
    def WEBHOOK_ALLOW_PRIVATE(self) -> bool:
        """Let webhook endpoints point at private, loopback or link-local addresses. Default
        ``False``; with ``DEBUG`` on they are always allowed (a developer's own receiver)."""
        from django.conf import settings

        return bool(self._setting("WEBHOOK_ALLOW_PRIVATE", False)) or bool(settings.DEBUG)

    @property
    def WEBHOOK_TIMEOUT(self) -> float:
        """Seconds a webhook delivery may take (connect, then each read). Default 5."""
        return float(self._setting("WEBHOOK_TIMEOUT", 5.0))

    @property
    def WEBHOOK_BACKOFF(self) -> tuple[float, ...]:
        """Seconds to wait after the 1st, 2nd, … failed delivery of an event; when they run
        out, the endpoint is marked failing. Default 10 s, 1 min, 10 min, 1 h, 6 h, 24 h."""
        value = self._setting("WEBHOOK_BACKOFF", (10, 60, 600, 3600, 6 * 3600, 24 * 3600))
        return tuple(float(x) for x in value)

    def raw(self, name: str) -> Any:
        """The setting as configured (for the system checks), or None when it is not set."""
        return self._setting(name, None)


app_settings = AppSettings()


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(AppSettings.prefix):
        app_settings.clear_cache()


setting_changed.connect(_setting_changed, dispatch_uid="core_ledger.conf.setting_changed")
