"""Tools of the reliability suite: pausing a real service call at a chosen statement, threads
that own (and close) their connection, waits on the database's own view of lock waits, and a
snapshot of what the ledger holds so a test can assert that a refusal wrote nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from core_ledger.ledger import AnyLedger, registry
from core_ledger.testing import api_token

WAIT_SECONDS = 20.0


class PauseBefore:
    """A ``connection.execute_wrapper`` that stops the calling thread right before the first
    statement containing ``marker``, until :meth:`release` (or ``WAIT_SECONDS``).

    Wrapped around a real service call, it holds the service in the middle of its transaction
    (e.g. balance row updated and locked, entry not yet inserted) so a fault can be injected
    exactly there.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.reached = threading.Event()
        self._release = threading.Event()

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        if self.marker in sql and not self.reached.is_set():
            self.reached.set()
            if not self._release.wait(WAIT_SECONDS):
                raise AssertionError("PauseBefore was never released")
        return execute(sql, params, many, context)

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_SECONDS), f"never reached {self.marker!r}"

    def release(self) -> None:
        self._release.set()


class StallEntryInsert:
    """Stops a keyed post in the middle of its one statement, to inject a fault exactly there.

    Another transaction holds an uncommitted entry with the same (user, idempotency key): the
    post's statement moves and locks the balance row, then its entry INSERT waits on the unique
    index for that transaction. :meth:`wait_reached` returns once PostgreSQL reports the post's
    backend waiting; :meth:`release` rolls the other transaction back and the statement goes on.
    """

    def __init__(self, ledger: AnyLedger, user_id: int, key: str) -> None:
        from django.db import connections

        self.holder = connections.create_connection("default")
        self.holder.set_autocommit(False)
        table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
        with self.holder.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (user_id, operation, amount, balance_after, "
                "idempotency_key, request_fingerprint, description, metadata, created_at, day) "
                "VALUES (%s, 'CREDIT_ADD', 1, 1, %s, '', 'stall', '{}', now(), current_date)",
                [user_id, key],
            )

    def wait_reached(self, worker: Worker) -> None:
        assert worker.pid_known.wait(WAIT_SECONDS) and worker.pid is not None
        wait_until_waiting_on_lock(worker.pid)

    def release(self) -> None:
        self.holder.rollback()
        self.holder.close()


class Worker(threading.Thread):
    """Runs ``fn`` in a thread with its own connection (closed at the end); keeps the outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.pid: int | None = None
        self.pid_known = threading.Event()

    def run(self) -> None:
        try:
            self.pid = backend_pid()
            self.pid_known.set()
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.pid_known.set()
            connection.close()

    def outcome(self) -> Any:
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "worker thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def wait_until_waiting_on_lock(pid: int) -> None:
    """Return once backend ``pid`` is blocked on a lock, as PostgreSQL itself reports it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
            row = cursor.fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.01)  # polling the server's state, not a sleep standing in for a barrier
    raise AssertionError(f"backend {pid} never waited on a lock")


@dataclass(frozen=True)
class Snapshot:
    """Every ledger's entry count and the balances of some users, to compare before/after."""

    counts: dict[str, int]
    balances: dict[tuple[str, int], int]
    last_ids: dict[str, int]


def snapshot(user_ids: Iterable[int] = ()) -> Snapshot:
    ids = list(user_ids)
    counts, balances, last_ids = {}, {}, {}
    for ledger in registry:
        counts[ledger.label] = ledger.entry_model.objects.count()
        last = ledger.entry_model.objects.order_by("-id").values_list("id", flat=True).first()
        last_ids[ledger.label] = int(last or 0)
        stored = dict(
            ledger.balance_model.objects.filter(user_id__in=ids).values_list("user_id", "balance")
        )
        for user_id in ids:
            balances[(ledger.label, user_id)] = int(stored.get(user_id, 0))
    return Snapshot(counts, balances, last_ids)


def fast_user(*, staff: bool = False, prefix: str = "rel") -> Any:
    """A user without password hashing (fast); the signup credits are granted as for anyone."""
    user_model = get_user_model()
    user = user_model(username=f"{prefix}-{time.monotonic_ns()}-{threading.get_ident() % 9973}")
    user.is_staff = staff  # pyright: ignore[reportAttributeAccessIssue]  # auth.User; the stubs' AbstractBaseUser lacks it
    user.set_unusable_password()
    user.save()
    if staff:  # staff here means an operator of every ledger (staff alone grants nothing)
        make_operator(user)
    return user


def make_operator(user: Any) -> None:
    from core_ledger.services.operators import operator_grant

    for ledger in registry:
        operator_grant(ledger=ledger, user=user)


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def time_order_violations(
    ledger: AnyLedger, user_ids: list[int] | None = None
) -> list[tuple[Any, ...]]:
    """Entries whose created_at is earlier than the previous entry of the same user in id order.

    ``balance_at`` reads by created_at while the balance chain runs in id order: the two orders
    must agree, or a past balance includes a movement that had not happened yet.
    """
    table = connection.ops.quote_name(ledger.entry_model._meta.db_table)
    sql = (
        "SELECT user_id, prev_id, prev_key, prev, id, idempotency_key, created_at FROM ("
        "SELECT user_id, id, idempotency_key, created_at, "
        "lag(id) OVER w AS prev_id, lag(idempotency_key) OVER w AS prev_key, "
        f"lag(created_at) OVER w AS prev FROM {table} WINDOW w AS (PARTITION BY user_id ORDER BY id)) q "
        "WHERE created_at < prev"
    )
    params: list[Any] = []
    if user_ids is not None:
        sql += " AND user_id = ANY(%s)"
        params.append(user_ids)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def test_database_url(db_name: str) -> str:
    """``DATABASE_URL`` for database ``db_name`` (the test database) on this run's server."""
    from core_ledger.testing import database_url

    return database_url(db_name)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GunicornServer:
    """``gunicorn`` with several workers on a free loopback port, production settings (DEBUG
    off), serving the test database; a context manager that always stops it."""

    def __init__(
        self, db_name: str, *, workers: int = 3, extra_env: dict[str, str] | None = None
    ) -> None:
        import os
        import secrets

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(db_name),
            "DEBUG": "0",
            "SECRET_KEY": "rel-" + secrets.token_hex(32),
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "API_THROTTLE_USER": "1000000/min",
            "API_THROTTLE_ANON": "1000000/min",
            **(extra_env or {}),
        }
        self.workers = workers
        self.process: Any = None
        self.log: Any = None

    def __enter__(self) -> GunicornServer:
        import subprocess
        import sys
        import tempfile

        import httpx
        from django.conf import settings

        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "ledger_project.wsgi",
                "-w",
                str(self.workers),
                "-b",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "60",
            ],
            cwd=str(settings.BASE_DIR),
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # polling readiness of a child process
        self.__exit__(None, None, None)
        raise AssertionError("gunicorn did not become healthy")

    def output(self, tail: int | None = 4000) -> str:
        """What the server printed: the last ``tail`` characters (all of it with None)."""
        self.log.seek(0)
        text: str = self.log.read().decode(errors="replace")
        return text if tail is None else text[-tail:]

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except Exception:
                self.process.kill()
                self.process.wait(5)
