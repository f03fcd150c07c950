"""The replica router without a replica: a replica that is down, not a standby, or fails in the
middle of a read is skipped and the read answers from the primary. (With a real streaming
replica: ``core_ledger/tests/reliability/test_scale.py``.) And the settings that turn replicas,
the psycopg pool and PgBouncer mode on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections
from django.db.utils import load_backend
from django.test import override_settings
from prometheus_client import REGISTRY

from core_ledger import routing
from core_ledger.ledger import AnyLedger
from core_ledger.tests.api.conftest import token_client, url

pytestmark = pytest.mark.django_db

ALIAS = "replica_test"


def _add_alias(**changes: Any) -> None:
    # A connection made at run time, not listed in DATABASES: Django's test case lets such
    # "dynamically created connections" through, where a listed alias would need the test's
    # transaction on it (and a replica that is down cannot open one).
    config = {**connections.settings["default"], **changes}
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(config, ALIAS)
    setattr(connections._connections, ALIAS, wrapper)  # type: ignore[attr-defined]


@pytest.fixture
def replica(request: pytest.FixtureRequest) -> Iterator[str]:
    """A replica alias: ``dead`` (nothing listens) or ``primary`` (the test server itself)."""
    kind = getattr(request, "param", "dead")
    if kind == "dead":
        _add_alias(HOST="127.0.0.1", PORT="1", OPTIONS={"connect_timeout": 2})
    else:
        _add_alias()
    routing.forget_states()
    with override_settings(
        SHARED_LEDGER_READ_REPLICAS=[ALIAS], DATABASE_ROUTERS=["core_ledger.routing.ReplicaRouter"]
    ):
        yield ALIAS
    routing.forget_states()
    connections[ALIAS].close()
    delattr(connections._connections, ALIAS)  # type: ignore[attr-defined]


def _fallbacks(reason: str) -> float:
    sample = REGISTRY.get_sample_value(
        "ledger_replica_fallbacks_total", {"alias": ALIAS, "reason": reason}
    )
    return sample or 0.0


def test_a_replica_that_is_down_is_skipped(ledger: AnyLedger, staff: Any, replica: str) -> None:
    before = _fallbacks("down")
    client = token_client(staff)
    for path in ("balances/", "entries/"):
        response = client.get(url(ledger, path))
        assert response.status_code == 200, response.content
    assert routing.choose_replica() is None
    assert _fallbacks("down") > before


@pytest.mark.parametrize("replica", ["primary"], indirect=True)
def test_a_server_that_is_not_a_standby_is_never_read_as_a_replica(replica: str) -> None:
    before = _fallbacks("not_standby")
    assert routing.choose_replica() is None
    assert _fallbacks("not_standby") == before + 1


def test_a_replica_failing_mid_read_is_marked_down_and_the_read_runs_on_the_primary(
    ledger: AnyLedger, staff: Any, replica: str
) -> None:
    # Believed healthy (a check a moment ago), but it is gone by the time the read runs.
    routing.record_state(replica, usable=True, reason="ok")
    before = _fallbacks("error")
    response = token_client(staff).get(url(ledger, "balances/"))
    assert response.status_code == 200, response.content
    assert _fallbacks("error") == before + 1
    assert routing.state_of(replica) == (False, "error")


def test_the_router_sends_writes_and_migrations_to_the_primary(replica: str) -> None:
    router = routing.ReplicaRouter()
    assert router.allow_migrate(replica, "core_ledger") is False
    assert router.allow_migrate("default", "core_ledger") is None
    assert router.db_for_read(object) is None  # type: ignore[arg-type]
    with routing.reading_from(replica):
        assert router.db_for_read(object) == replica  # type: ignore[arg-type]
        assert router.db_for_write(object) is None  # type: ignore[arg-type]


def _settings_under(**env: str) -> dict[str, Any]:
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({"
        "'databases': s.DATABASES, 'replicas': s.SHARED_LEDGER_READ_REPLICAS,"
        "'routers': s.DATABASE_ROUTERS, 'prepared': s.SHARED_LEDGER_PREPARED_STATEMENTS,"
        "'lock_timeout': s.SHARED_LEDGER_REQUEST_LOCK_TIMEOUT_MS}, default=str))"
    )
    out = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "ledger_project.settings", **env},
        capture_output=True,
        text=True,
        cwd=str(settings.BASE_DIR),
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_settings_for_replicas_pool_and_pgbouncer() -> None:
    plain = _settings_under(DATABASE_POOL="0", DATABASE_PGBOUNCER="0", DATABASE_REPLICA_URLS="")
    assert plain["replicas"] == [] and plain["routers"] == []
    assert "pool" not in plain["databases"]["default"]["OPTIONS"]
    assert plain["prepared"] is True and plain["lock_timeout"] == 5000

    scaled = _settings_under(
        DATABASE_POOL="1",
        DATABASE_PGBOUNCER="1",
        DATABASE_REPLICA_URLS="postgres://r@10.0.0.2:5432/db,postgres://r@10.0.0.3:5432/db",
    )
    default = scaled["databases"]["default"]
    assert default["OPTIONS"]["pool"]["max_size"] == 10 and default["CONN_MAX_AGE"] == 0
    assert default["DISABLE_SERVER_SIDE_CURSORS"] is True
    assert scaled["prepared"] is False and scaled["lock_timeout"] is None
    assert scaled["replicas"] == ["replica_1", "replica_2"]
    assert scaled["routers"] == ["core_ledger.routing.ReplicaRouter"]
    replica = scaled["databases"]["replica_2"]
    assert (replica["HOST"], replica["TEST"]["MIRROR"]) == ("10.0.0.3", "default")
    assert replica["OPTIONS"]["connect_timeout"] == 2


def test_the_admin_lists_read_inside_the_replica_scope_and_fall_back(
    ledger: AnyLedger, staff: Any, replica: str
) -> None:
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(staff)
    for model in (ledger.entry_model, ledger.balance_model):
        # Believed healthy, but gone: the list's own queries (run while the page renders) must
        # meet the dead replica inside the scope, fail over to the primary and still answer.
        routing.record_state(replica, usable=True, reason="ok")
        before = _fallbacks("error")
        meta = model._meta
        page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert page.status_code == 200
        assert _fallbacks("error") == before + 1, meta.model_name


@pytest.mark.parametrize("replica", ["primary"], indirect=True)
def test_the_admin_lists_rows_are_read_on_the_replica(
    ledger: AnyLedger, staff: Any, replica: str
) -> None:
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(staff)
    ran: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        ran.append(sql)
        return execute(sql, params, many, context)

    meta = ledger.entry_model._meta
    routing.record_state(replica, usable=True, reason="ok")  # the test server, taken as healthy
    with connections[replica].execute_wrapper(record):
        page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
    assert page.status_code == 200
    # The page of rows itself, not only the count, came from there.
    rows = [q for q in ran if meta.db_table in q and "LIMIT" in q and "COUNT" not in q]
    assert rows, ran
