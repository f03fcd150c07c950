"""Beyond one machine, for real: a streaming replica, PgBouncer, the psycopg pool, and two app
servers side by side, all started as local processes by ``ledger_project.topology``.

The module's own PostgreSQL primary and hot standby come from ``initdb`` + ``pg_basebackup -R`` +
``pg_ctl`` with the binaries of the server this run uses (the machine's server does not accept
replication connections, and a test must not reconfigure it). Which database served a request is
read from the app server's JSON log line (``db``: the aliases that ran its statements), and the
replica's answers are told apart from the primary's by pausing its replay: a list served by the
replica does not show an entry posted after the pause.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from core_ledger.ledger import registry
from core_ledger.operations import SharedOperation
from ledger_project.topology import (
    AppServer,
    PgBouncer,
    Postgres,
    manage,
    pgbouncer_program,
    seed,
    start_databases,
    wait_replayed,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

LABEL = registry.labels()[0]
REDIS_URL = "redis://127.0.0.1:6379/6"
METRICS = "scale-metrics-token"


@dataclass
class Topology:
    root: Path
    primary: Postgres
    replica: Postgres
    accounts: dict[str, Any]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.primary.url,
            "DATABASE_REPLICA_URLS": self.replica.url,
            "REPLICA_CHECK_SECONDS": "0.2",
            "METRICS_TOKEN": METRICS,
            "API_THROTTLE_USER": "1000000/min",
            "API_THROTTLE_ANON": "1000000/min",
            **extra,
        }

    def server(self, name: str, *, workers: int = 2, **extra: str) -> AppServer:
        return AppServer(self.env(**extra), self.root / "logs" / f"{name}.log", workers=workers)

    def entry_ids(self) -> set[int]:
        table = registry.get(LABEL).entry_model._meta.db_table
        rows = self.primary.sql(f'SELECT id FROM "{table}"', "shared_ledger")
        return {int(r[0]) for r in rows}


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    # Not pytest's tmp_path: its parent is private to root, and PostgreSQL runs as its own user.
    root = Path(tempfile.mkdtemp(prefix="sl-topology-"))
    root.chmod(0o755)
    try:
        primary, replica = start_databases(root / "pg")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    assert replica is not None
    try:
        manage({"DATABASE_URL": primary.url}, "migrate", "--noinput", "-v0")
        accounts = seed({"DATABASE_URL": primary.url}, users=12)
        yield Topology(root, primary, replica, accounts)
    finally:
        replica.stop("immediate")
        primary.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def started() -> Iterator[Callable[[AppServer], AppServer]]:
    """``started(server)``: start an app server; every one is stopped at the end."""
    servers: list[AppServer] = []

    def start(server: AppServer) -> AppServer:
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def _served_by(server: AppServer, request_id: str) -> list[str]:
    for _ in range(50):
        for line in server.log_lines():
            if line.get("request_id") == request_id:
                return list(line["db"])
        time.sleep(0.05)  # the worker writes its line right after the response
    raise AssertionError(f"no log line for {request_id}")


def _get(server: AppServer, path: str, token: str) -> tuple[httpx.Response, list[str]]:
    request_id = uuid.uuid4().hex
    response = httpx.get(
        server.base_url + path, headers={**_auth(token), "X-Request-ID": request_id}, timeout=20
    )
    return response, _served_by(server, request_id)


def _post(server: AppServer, token: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = _auth(token) | ({"Idempotency-Key": key} if key else {})
    return httpx.post(
        f"{server.base_url}/api/{LABEL}/entries/", json=body, headers=headers, timeout=20
    )


# --- read replicas -----------------------------------------------------------------------------


def test_lag_tolerant_reads_go_to_the_replica_and_the_rest_to_the_primary(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    server = started(topology.server("replica-reads", REPLICA_MAX_LAG_SECONDS="3600"))
    operator = topology.accounts["operator"]["token"]
    user = topology.accounts["users"][0]
    credit = {"user": user["id"], "operation": SharedOperation.CREDIT_ADD.value, "amount": 3}
    assert _post(server, operator, credit).status_code == 201
    wait_replayed(topology.primary, topology.replica)
    assert topology.replica.sql("SELECT pg_is_in_recovery()") == [(True,)]
    assert topology.primary.sql("SELECT pg_is_in_recovery()") == [(False,)]

    # Replay paused: what the replica serves no longer shows new writes.
    topology.replica.sql("SELECT pg_wal_replay_pause()")
    try:
        posted = _post(server, operator, credit | {"amount": 4})
        assert posted.status_code == 201
        new_id = posted.json()["id"]

        everyone, db = _get(server, f"/api/{LABEL}/entries/?page_size=200", operator)
        assert everyone.status_code == 200 and "replica_1" in db, db
        assert new_id not in [e["id"] for e in everyone.json()["results"]]
        balances, db = _get(server, f"/api/{LABEL}/balances/", operator)
        assert balances.status_code == 200 and "replica_1" in db, db

        # The caller's own entries and balance, and every write: the primary, so fresh.
        own, db = _get(server, f"/api/{LABEL}/entries/?page_size=200", user["token"])
        assert own.status_code == 200 and db == ["default"], db
        assert new_id in [e["id"] for e in own.json()["results"]]
        mine, db = _get(server, f"/api/{LABEL}/balance/", user["token"])
        assert mine.status_code == 200 and db == ["default"], db
        one, db = _get(server, f"/api/{LABEL}/entries/{new_id}/", operator)
        assert one.status_code == 200 and db == ["default"], db

        # ledger_export reads from the replica as well.
        env = topology.env(REPLICA_MAX_LAG_SECONDS="3600")
        exported = manage(env, "ledger_export", "--ledger", LABEL, "--format", "jsonl")
        ids = [json.loads(line)["id"] for line in exported.splitlines() if line]
        assert ids and new_id not in ids
        direct = manage({**env, "DATABASE_REPLICA_URLS": ""}, "ledger_export", "--ledger", LABEL)
        assert f"\n{new_id}," in direct
    finally:
        topology.replica.sql("SELECT pg_wal_replay_resume()")
    post_lines = [x for x in server.log_lines() if x.get("method") == "POST"]
    assert post_lines and all(x["db"] == ["default"] for x in post_lines), post_lines


def test_a_replica_lagging_beyond_the_limit_is_skipped(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    server = started(topology.server("replica-lag", workers=1, REPLICA_MAX_LAG_SECONDS="1"))
    operator = topology.accounts["operator"]["token"]
    user = topology.accounts["users"][1]
    credit = {"user": user["id"], "operation": SharedOperation.CREDIT_ADD.value, "amount": 2}
    assert _post(server, operator, credit).status_code == 201
    wait_replayed(topology.primary, topology.replica)
    topology.replica.sql("SELECT pg_wal_replay_pause()")
    try:
        new_id = _post(server, operator, credit).json()["id"]
        time.sleep(1.5)  # the last replayed commit is now older than the 1 s limit
        listed, db = _get(server, f"/api/{LABEL}/entries/?user={user['id']}", operator)
        assert listed.status_code == 200 and db == ["default"], db
        assert new_id in [e["id"] for e in listed.json()["results"]]
        metrics = httpx.get(
            f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS}"}
        ).text
        assert 'ledger_replica_fallbacks_total{alias="replica_1",reason="lagging"}' in metrics
    finally:
        topology.replica.sql("SELECT pg_wal_replay_resume()")


def test_stopping_the_replica_mid_load_leaves_every_endpoint_answering(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    server = started(topology.server("replica-stop", workers=2))
    operator = topology.accounts["operator"]["token"]
    user = topology.accounts["users"][2]
    paths = [
        (f"/api/{LABEL}/entries/", operator),
        (f"/api/{LABEL}/balances/", operator),
        (f"/api/{LABEL}/entries/", user["token"]),
        (f"/api/{LABEL}/balance/", user["token"]),
        ("/api/balances/", user["token"]),
    ]
    statuses: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=20) as client:
            while not stop.is_set():
                for path, token in paths:
                    statuses.append(
                        client.get(server.base_url + path, headers=_auth(token)).status_code
                    )

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        before = len(statuses)
        topology.replica.stop("immediate")  # mid-load: connections to it die in flight
        time.sleep(2.0)
        after_stop = len(statuses) - before
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        topology.replica.start()
    assert before > 0 and after_stop > 10, (before, after_stop)
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    # After the stop the lists were served by the primary.
    listed, _db = _get(server, f"/api/{LABEL}/balances/", operator)
    assert listed.status_code == 200
    wait_replayed(topology.primary, topology.replica)


# --- pooling -----------------------------------------------------------------------------------


def _main_flows(server: AppServer, topology: Topology, user: dict[str, Any]) -> None:
    """Token, credit, daily reward, idempotent replay, spend, refusal, reverse, the lists."""
    operator = topology.accounts["operator"]["token"]
    uid, token = user["id"], user["token"]
    add = {"user": uid, "operation": SharedOperation.CREDIT_ADD.value, "amount": 50}
    first = _post(server, operator, add, key="flow-1")
    again = _post(server, operator, add, key="flow-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    start = _balance(server, token)
    daily = {"user": uid, "operation": SharedOperation.DAILY_REWARD.value}
    claimed = _post(server, token, daily)
    assert claimed.status_code == 201, claimed.text
    assert _post(server, token, daily).json()["error"]["code"] == "already_claimed"
    spend = {"user": uid, "operation": SharedOperation.CREDIT_SPEND.value, "amount": 7}
    spent = _post(server, token, spend)
    assert spent.status_code == 201, spent.text
    too_much = _post(server, token, spend | {"amount": 10**9})
    assert too_much.json()["error"]["code"] == "insufficient_credits"
    reversed_ = httpx.post(
        f"{server.base_url}/api/{LABEL}/entries/{spent.json()['id']}/reverse/",
        json={"reason": "flow"},
        headers=_auth(operator),
        timeout=20,
    )
    assert reversed_.status_code == 201, reversed_.text
    for path, who in [
        (f"/api/{LABEL}/balance/", token),
        (f"/api/{LABEL}/entries/", token),
        (f"/api/{LABEL}/entries/", operator),
        (f"/api/{LABEL}/balances/", operator),
        ("/api/ledgers/", token),
    ]:
        response = httpx.get(server.base_url + path, headers=_auth(who), timeout=20)
        assert response.status_code == 200, (path, response.text)
    # The credit of 50 came before ``start``; since then: the reward, a spend and its reversal.
    assert _balance(server, token) == start + claimed.json()["amount"] - 7 + 7


def _balance(server: AppServer, token: str) -> int:
    response = httpx.get(f"{server.base_url}/api/{LABEL}/balance/", headers=_auth(token))
    return int(response.json()["balance"])


def _concurrent_spends(servers: list[AppServer], user: dict[str, Any], n: int) -> list[int]:
    spend = {"user": user["id"], "operation": SharedOperation.CREDIT_SPEND.value, "amount": 9}

    def one(i: int) -> int:
        return int(_post(servers[i % len(servers)], user["token"], spend).status_code)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_the_main_flows_run_through_pgbouncer_in_transaction_mode(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    # Not a skip: a missing pgbouncer is a missing test dependency, which `make test` installs.
    assert pgbouncer_program() is not None, (
        "pgbouncer is not installed: run `make test` (it installs Debian's pgbouncer) or "
        "apt-get install -y pgbouncer"
    )
    bouncer = PgBouncer(topology.root / "pgbouncer", topology.primary.port)
    bouncer.start()
    try:
        server = started(
            topology.server(
                "pgbouncer", workers=3, DATABASE_URL=bouncer.url, DATABASE_PGBOUNCER="1"
            )
        )
        _main_flows(server, topology, topology.accounts["users"][3])
        spender = topology.accounts["users"][4]
        start = _balance(server, spender["token"])
        statuses = _concurrent_spends([server], spender, 24)
        assert set(statuses) <= {201, 409} and statuses.count(201) == start // 9, statuses
        assert httpx.get(f"{server.base_url}/readyz").json()["status"] == "ok"
        # The statements did go through PgBouncer, as transactions it pooled.
        assert bouncer.transactions() > 20

        # The control: the same server without DATABASE_PGBOUNCER breaks behind it (a prepared
        # statement lands on a server connection that already has one of that name, or none).
        unaware = started(topology.server("pgbouncer-unaware", workers=3, DATABASE_URL=bouncer.url))
        spender = topology.accounts["users"][11]
        add = {"user": spender["id"], "operation": SharedOperation.CREDIT_ADD.value, "amount": 1}
        operator = topology.accounts["operator"]["token"]
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: _post(unaware, operator, add).status_code, range(60)))
        assert 500 in codes, codes
        tracebacks = [x.get("traceback", "") for x in unaware.log_lines() if x.get("status") == 500]
        assert any("prepared statement" in t for t in tracebacks), tracebacks[:1]
    finally:
        bouncer.stop()


def test_the_main_flows_run_on_the_psycopg_pool(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    server = started(topology.server("pool", workers=3, DATABASE_POOL="1"))
    _main_flows(server, topology, topology.accounts["users"][5])
    # /metrics adds up the workers (prometheus-client's multiprocess mode): the six posts of the
    # flows, whichever workers served them, and more than one worker did.
    scraped = httpx.get(
        f"{server.base_url}/metrics", headers={"Authorization": f"Bearer {METRICS}"}
    )
    posts = sum(
        sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name == "ledger_posts_total"
    )
    assert posts == 6, scraped.text
    workers = {
        p.stem.rsplit("_", 1)[-1] for p in server.log_path.with_suffix(".prom").glob("counter_*.db")
    }
    assert len(workers) >= 2, workers
    backends = topology.primary.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shared_ledger'"
    )
    assert backends[0][0] >= 2  # the pools keep their connections open between requests


# --- two app servers -----------------------------------------------------------------------------


@pytest.fixture
def pair(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> Iterator[list[AppServer]]:
    prefix = f"sl-scale-{secrets.token_hex(4)}"
    cache = {"CACHE_URL": f"{REDIS_URL}?key_prefix={prefix}"}
    yield [started(topology.server(f"app{n}-{prefix}", workers=2, **cache)) for n in (1, 2)]
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def test_two_servers_one_idempotency_key_posts_once(
    topology: Topology, pair: list[AppServer]
) -> None:
    operator = topology.accounts["operator"]["token"]
    user = topology.accounts["users"][6]
    add = {"user": user["id"], "operation": SharedOperation.CREDIT_ADD.value, "amount": 1}
    before = topology.entry_ids()
    for round_ in range(8):
        key = f"both-{round_}-{secrets.token_hex(3)}"
        barrier = threading.Barrier(2)

        def send(server: AppServer, key: str = key, barrier: threading.Barrier = barrier) -> Any:
            barrier.wait()
            return _post(server, operator, add, key=key)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(send, pair))
        assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
        assert answers[0].json()["id"] == answers[1].json()["id"]
        replayed = sorted(a.headers.get("Idempotent-Replayed", "") for a in answers)
        assert replayed == ["", "true"], replayed
    assert len(topology.entry_ids() - before) == 8


def test_two_servers_share_one_users_throttle(
    topology: Topology, started: Callable[[AppServer], AppServer]
) -> None:
    prefix = f"sl-throttle-{secrets.token_hex(4)}"
    limited = {"CACHE_URL": f"{REDIS_URL}?key_prefix={prefix}", "API_THROTTLE_USER": "6/min"}
    servers = [started(topology.server(f"throttle{n}", workers=1, **limited)) for n in (1, 2)]
    token = topology.accounts["users"][7]["token"]

    def get(i: int) -> int:
        server = servers[i % 2]
        return httpx.get(f"{server.base_url}/api/ledgers/", headers=_auth(token)).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(get, range(14)))
    assert sorted(statuses) == [200] * 6 + [429] * 8, statuses


def test_two_servers_concurrent_spends_never_overdraw(
    topology: Topology, pair: list[AppServer]
) -> None:
    users = topology.accounts["users"][8:10]
    for user in users:
        start = _balance(pair[0], user["token"])
        statuses = _concurrent_spends(pair, user, 2 * (start // 9) + 4)
        assert set(statuses) <= {201, 409}, statuses
        assert statuses.count(201) == start // 9, statuses
        assert _balance(pair[1], user["token"]) == start - 9 * (start // 9)
    # ledger_check over the whole primary (exit status 1 on any discrepancy: manage raises).
    manage({"DATABASE_URL": topology.primary.url}, "ledger_verify")


def test_one_server_killed_mid_load_the_other_answers_and_nothing_acknowledged_is_lost(
    topology: Topology, pair: list[AppServer]
) -> None:
    operator = topology.accounts["operator"]["token"]
    user = topology.accounts["users"][10]
    add = {"user": user["id"], "operation": SharedOperation.CREDIT_ADD.value, "amount": 1}
    acknowledged: list[int] = []
    answered_after_kill: list[int] = []
    failures: list[str] = []
    killed = threading.Event()
    stop = threading.Event()

    def load(n: int) -> None:
        i = 0
        while not stop.is_set():
            server = pair[(n + i) % 2]
            i += 1
            try:
                response = _post(server, operator, add, key=f"kill-{n}-{i}")
            except httpx.HTTPError as exc:
                failures.append(type(exc).__name__)
                continue
            if response.status_code == 201:
                acknowledged.append(response.json()["id"])
                if killed.is_set() and server is pair[1]:
                    answered_after_kill.append(response.json()["id"])

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.5)
        pair[0].kill()
        killed.set()
        time.sleep(2.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len(answered_after_kill) > 5, (len(acknowledged), failures[:5])
    assert set(acknowledged) <= topology.entry_ids()
    manage({"DATABASE_URL": topology.primary.url}, "ledger_verify")
    print(f"kill: {len(acknowledged)} acknowledged, {len(failures)} failed connections")


def test_the_lag_probe_sees_a_caught_up_replica_as_current_for_an_unprivileged_role(
    topology: Topology,
) -> None:
    """A role without pg_read_all_stats sees pg_stat_wal_receiver's status as NULL: an idle
    primary must still leave the replica usable (lag 0), not "behind" by the idle time."""
    import psycopg

    from core_ledger.routing import LAG_SQL

    topology.primary.sql("DROP ROLE IF EXISTS plain_reader")
    topology.primary.sql("CREATE ROLE plain_reader LOGIN")
    wait_replayed(topology.primary, topology.replica)
    time.sleep(1.2)  # idle: the last replayed commit is older than a second
    url = f"postgres://plain_reader@127.0.0.1:{topology.replica.port}/shared_ledger"
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(LAG_SQL).fetchone()
    assert row is not None and row[0] is True and float(row[1]) == 0.0, row
