"""The core installs into any Django project: build its wheel, install it into a brand-new project
with its own virtualenv and its own user model (email login, no ``username``), and use it there.

Slow (a wheel build, a virtualenv, a ``pip install``); part of ``make test``. pip's cache makes the
dependencies quick after the first run, and the constraints keep them at this project's versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import psycopg
import pytest
from django.conf import settings
from django.db import connection
from psycopg import sql as pgsql

import core_ledger
from core_ledger.testing import database_url

PROJECT = Path(settings.BASE_DIR)
EMAIL = "alice@example.com"
PASSWORD = "wheel-test-Secret-9"


def run(*args: str | Path, cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core's wheel, built with ``python -m build --wheel`` from a clean copy of the sources
    (no build/ or egg-info left in the checkout, nothing stale from an earlier build)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, src / name)
    shutil.copytree(
        PROJECT / "core_ledger",
        src / "core_ledger",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, src, cwd=src, env=_env())
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture
def host_database() -> Iterator[dict[str, object]]:
    """A fresh database on this run's server, dropped afterwards: the host project's own."""
    name = f"{connection.settings_dict['TEST']['NAME'] or 'test_shared_ledger'}_wheel_host"
    admin_url = database_url("postgres")

    def drop(conn: psycopg.Connection[object]) -> None:
        for each in (name, f"{name}_test"):  # the host's, and its own test run's
            conn.execute(
                pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(each))
            )

    with psycopg.connect(admin_url, autocommit=True) as conn:
        drop(conn)
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    params = connection.settings_dict
    try:
        yield {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": params.get("USER") or "",
            "PASSWORD": params.get("PASSWORD") or "",
            "HOST": params.get("HOST") or "",
            "PORT": str(params.get("PORT") or ""),
            "TEST": {"NAME": f"{name}_test"},
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            drop(conn)


def _env(venv: Path | None = None) -> dict[str, str]:
    """The environment without this project's settings, database or virtualenv."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _constraints(path: Path) -> Path:
    """This project's pinned versions as pip constraints (constraints take no extras)."""
    lines = [
        line
        for name in ("requirements.txt", "requirements-dev.txt")
        for line in (PROJECT / name).read_text().splitlines()
        if not line.startswith("-")
    ]
    pins = [re.sub(r"\[.*?\]", "", line.split("#")[0]).strip() for line in lines]
    path.write_text("\n".join(p for p in pins if p) + "\n")
    return path


def test_wheel_holds_the_core_only(wheel: Path) -> None:
    assert wheel.name == f"django_shared_ledger-{core_ledger.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(
            f"django_shared_ledger-{core_ledger.__version__}.dist-info/METADATA"
        ).decode()
    top = {n.split("/")[0] for n in names}
    assert top == {"core_ledger", f"django_shared_ledger-{core_ledger.__version__}.dist-info"}
    assert not [n for n in names if n.startswith("core_ledger/tests/")]
    for expected in (
        "core_ledger/py.typed",
        "core_ledger/urls.py",
        "core_ledger/api/urls.py",
        "core_ledger/templates/admin/core_ledger/post_entry.html",
        "core_ledger/management/commands/ledger_post.py",
        "core_ledger/management/commands/startledgerapp.py",
        "core_ledger/management/app_template/models.py-tpl",
        "core_ledger/management/app_template/migrations/__init__.py-tpl",
        "core_ledger/management/app_template/tests/test_ledger.py-tpl",
    ):
        assert expected in names, expected
    template = PROJECT / "core_ledger" / "management" / "app_template"
    for path in template.rglob("*-tpl"):
        assert f"core_ledger/management/app_template/{path.relative_to(template)}" in names
    assert "Name: django-shared-ledger" in metadata
    required = {
        re.split(r"[<>=!~ ;\[]", line.removeprefix("Requires-Dist: "))[0].lower()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert required == {
        "django",
        "djangorestframework",
        "drf-spectacular",
        "django-filter",
        "django-pgtrigger",
        "psycopg",
        "tqdm",
        "prometheus-client",  # core_ledger.metrics: /metrics
    }


HOST_SETTINGS = """

# --- Added for Shared Ledger (see the README: "Use the core in your own project") ---
INSTALLED_APPS += [
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "pgtrigger",
    "core_ledger",
    *{extra_apps!r},
    "accounts",
]
AUTH_USER_MODEL = "accounts.User"
DATABASES = {{"default": {database!r}}}
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
REST_FRAMEWORK = {{
    "DEFAULT_AUTHENTICATION_CLASSES": {authentication!r},
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {throttle_rates!r},
    "EXCEPTION_HANDLER": "core_ledger.api.errors.exception_handler",
}}
"""

USER_MODEL = '''
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **fields):
        user = self.model(email=self.normalize_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """Logs in by email; there is no username field at all."""

    email = models.EmailField(unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = []
'''

USER_ADMIN = """
from django.contrib import admin

from accounts.models import User
from core_ledger.admin import LedgerUserAdminMixin


@admin.register(User)
class UserAdmin(LedgerUserAdminMixin, admin.ModelAdmin):
    list_display = ("email", "is_staff")
    search_fields = ("email",)
    ordering = ("email",)
    fields = ("email", "is_active", "is_staff", "is_superuser", "last_login")
    readonly_fields = ("last_login",)
"""

HOST_URLS = """
from django.contrib import admin
from django.urls import include, path

from core_ledger.api.health import healthz
from core_ledger.api.urls import api_urlpatterns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns())),
    path("healthz", healthz),
]
"""

# Runs inside the host project (manage.py shell): the service, the admin, the look-ups.
IN_HOST = """
import json
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from core_ledger.admin import LedgerUserAdminMixin
from core_ledger.ledger import registry
from core_ledger.selectors import balance_get
from core_ledger.services import entry_post

User = get_user_model()
ledger = registry.get("gamma")


def debit_function_installed():
    # migrate created the new ledger's debit function (core_ledger's post_migrate receiver)
    from django.db import connection
    from core_ledger.services.lots import debit_function_name

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname = %s", [debit_function_name(ledger)])
        return cursor.fetchone()[0] == 1


user = User.objects.create_user(email="{email}", password="{password}")
signup = balance_get(ledger=ledger, user_id=user.pk)
entry = entry_post(
    ledger=ledger, user_id=user.pk, operation=ledger.operation("CREDIT_ADD"), amount=40
).entry
boss = User.objects.create_superuser(email="boss@example.com", password="x")
client = Client()
client.force_login(boss)
user_page = client.get(f"/admin/accounts/user/{{user.pk}}/change/")
entries_model = ledger.entry_model._meta
search = client.get(
    f"/admin/{{entries_model.app_label}}/{{entries_model.model_name}}/?q=alice@example"
)
print(json.dumps({{
    "user_id": user.pk,
    "signup": signup,
    "balance_after": entry.balance_after,
    "user_admin_is_the_hosts": type(admin.site._registry[User]).__module__,
    "user_admin_has_mixin": isinstance(admin.site._registry[User], LedgerUserAdminMixin),
    "user_page": [user_page.status_code, "ledger-balances" in user_page.content.decode()],
    "search": [search.status_code, "{email}" in search.content.decode()],
    "debit_function": debit_function_installed(),
}}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_core_installs_into_a_new_project_with_an_email_user_model(
    wheel: Path, host_database: dict[str, object], tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path, env=_env())
    python = venv / "bin" / "python"
    env = _env(venv)
    # The host's own virtualenv: the wheel and its declared dependencies, nothing else.
    run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        f"{wheel}[binary]",
        "pytest",  # for the generated app's own tests
        "pytest-django",
        "-c",
        _constraints(tmp_path / "constraints.txt"),
        cwd=tmp_path,
        env=env,
    )
    site = run(
        python, "-c", "import core_ledger, sys; print(core_ledger.__file__)", cwd=tmp_path, env=env
    )
    assert site.startswith(str(venv)), site  # the installed wheel, not this checkout

    (tmp_path / "host").mkdir()
    run(
        venv / "bin" / "django-admin",
        "startproject",
        "host",
        tmp_path / "host",
        cwd=tmp_path,
        env=env,
    )
    host = tmp_path / "host"
    manage = (python, "manage.py")

    # Its own user model: email login, no username field; its own user admin with the mixin.
    run(*manage, "startapp", "accounts", cwd=host, env=env)
    (host / "accounts" / "models.py").write_text(USER_MODEL)
    (host / "accounts" / "admin.py").write_text(USER_ADMIN)
    # The same token mechanism as this project: its authentication classes, their apps and
    # rates (the token endpoint's throttle); no other setting of this project.
    rest = settings.REST_FRAMEWORK
    extra_apps = [
        app
        for app in settings.INSTALLED_APPS
        if app.startswith(("rest_framework.", "core_ledger."))
    ]
    settings_py = host / "host" / "settings.py"
    settings_py.write_text(
        settings_py.read_text()
        + HOST_SETTINGS.format(
            extra_apps=extra_apps,
            database=host_database,
            authentication=list(rest["DEFAULT_AUTHENTICATION_CLASSES"]),
            throttle_rates=dict(cast("dict[str, str]", rest.get("DEFAULT_THROTTLE_RATES", {}))),
        )
    )
    (host / "host" / "urls.py").write_text(HOST_URLS)

    # A ledger app made by the core's command, then the usual Django steps.
    out = run(
        *manage,
        "startledgerapp",
        "app_gamma",
        "--operations",
        "QUIZ_PASS:credit:staff,HINT:debit:user",
        cwd=host,
        env=env,
    )
    assert 'Add "app_gamma" to INSTALLED_APPS' in out
    settings_py.write_text(settings_py.read_text() + 'INSTALLED_APPS += ["app_gamma"]\n')
    run(*manage, "makemigrations", "accounts", "app_gamma", cwd=host, env=env)
    run(*manage, "migrate", "--noinput", cwd=host, env=env)
    run(*manage, "check", cwd=host, env=env)
    run(*manage, "makemigrations", "--check", "--dry-run", cwd=host, env=env)

    # The generated app's own tests pass in the host, with its email-login user model.
    (host / "pytest.ini").write_text("[pytest]\nDJANGO_SETTINGS_MODULE = host.settings\n")
    tests = run(
        python, "-m", "pytest", "app_gamma", "-q", "-p", "no:cacheprovider", cwd=host, env=env
    )
    assert re.search(r"\b7 passed\b", tests), tests
    assert "failed" not in tests and "error" not in tests.lower(), tests

    # Through the service, the admin and the commands, all with an email-login user model.
    facts = json.loads(
        run(
            *manage,
            "shell",
            "-c",
            IN_HOST.format(email=EMAIL, password=PASSWORD),
            cwd=host,
            env=env,
        )
        .strip()
        .splitlines()[-1]
    )
    assert facts["signup"] == 100  # the generated ledger's signup credit, granted on creation
    assert facts["balance_after"] == 140
    assert facts["user_admin_is_the_hosts"] == "accounts.admin"
    assert facts["user_admin_has_mixin"] is True
    assert facts["user_page"] == [200, True]
    assert facts["search"] == [200, True]
    assert facts["debit_function"] is True
    out = run(
        *manage,
        "ledger_post",
        "--ledger",
        "gamma",
        "--user",
        EMAIL,
        "--operation",
        "QUIZ_PASS",
        "--amount",
        "7",
        cwd=host,
        env=env,
    )
    assert f"for {EMAIL} (id {facts['user_id']}), balance after 147" in out

    # Through the API, with a token for the email login.
    port = _free_port()
    server = subprocess.Popen(
        [str(python), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=host,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the host's server did not start"
            time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=30) as http:
            answer = http.post("/api/auth/token/", json={"username": EMAIL, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            auth = {"Authorization": f"Token {answer.json()['token']}"}
            posted = http.post(
                "/api/gamma/entries/", json={"operation": "HINT", "amount": 5}, headers=auth
            )
            assert posted.status_code == 201, posted.text
            assert posted.json()["balance_after"] == 142
            balance = http.get("/api/gamma/balance/", headers=auth)
            assert balance.status_code == 200, balance.text
            assert balance.json()["balance"] == 142
            assert http.get("/api/gamma/balance/").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)

    out = run(
        *manage,
        "ledger_balance",
        "--ledger",
        "gamma",
        "--user",
        EMAIL,
        "--format",
        "json",
        cwd=host,
        env=env,
    )
    assert json.loads(out) == {
        "ledger": "gamma",
        "user_id": facts["user_id"],
        "username": EMAIL,
        "balance": 142,
        "held": 0,
        "available": 142,
        "next_expiry": None,
        "expiring": 0,
    }
    run(*manage, "ledger_verify", "--ledger", "gamma", cwd=host, env=env)
    out = run(
        *manage,
        "ledger_export",
        "--ledger",
        "gamma",
        "--user",
        EMAIL,
        "--format",
        "jsonl",
        cwd=host,
        env=env,
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["amount"] for r in rows] == [100, 40, 7, -5]
    assert {r["username"] for r in rows} == {EMAIL}

    # The demo data, with logins that are emails (alice's account exists already: reused).
    out = run(*manage, "ledger_demo", cwd=host, env=env)
    assert "Staff login for /admin/: admin@example.com / " in out
    assert re.search(
        r"Demo users: alice@example\.com / alice-demo \(id \d+\), "
        r"bob@example\.com / bob-demo \(id \d+\)",
        out,
    ), out
    run(*manage, "ledger_verify", cwd=host, env=env)
