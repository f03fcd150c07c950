"""``make serve`` itself, end to end: the real Makefile target against the test database.

It must come up with ``DEBUG=0`` from the caller's environment and no ``SECRET_KEY`` (the target
supplies one for every step), and serve the admin, its static files (the manifest written by
its own ``collectstatic``) and the API docs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from core_ledger.testing import database_url
from core_ledger.tests.reliability.helpers import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


# The caller's DEBUG: 1 as after `make run` (its .env), 0 as in production-like shells.
@pytest.mark.parametrize("caller_debug", ["1", "0"])
def test_make_serve_answers_admin_static_and_docs(caller_debug: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env.update(
        DATABASE_URL=database_url(),
        DEBUG=caller_debug,
        PORT=str(port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="2",
        DEMO_ADMIN_PASSWORD="serve-test-password",
    )
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w+b")
    # ``-o`` keeps make from reinstalling the (shared) virtualenv; the recipe is the real one.
    process = subprocess.Popen(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "serve"],
        cwd=str(settings.BASE_DIR),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # make, its shell and gunicorn share one process group
    )

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"make serve exited {process.returncode}:\n{output()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"make serve never became healthy:\n{output()}")
            time.sleep(0.5)  # polling readiness of a child process

        login = httpx.get(f"{base}/admin/login/", timeout=10)
        assert login.status_code == 200, output()
        css = re.findall(r'href="(/static/[^"]+\.css)"', login.text)
        assert css, login.text[:2000]
        # Manifest storage: the hashed name proves collectstatic ran with DEBUG off.
        assert re.search(r"\.[0-9a-f]{12}\.css$", css[0]), css
        static = httpx.get(f"{base}{css[0]}", timeout=10)
        assert static.status_code == 200
        assert "text/css" in static.headers["Content-Type"]
        docs = httpx.get(f"{base}/api/docs/", timeout=10)
        assert docs.status_code == 200, output()
        assert "swagger" in docs.text.lower()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        log.close()
