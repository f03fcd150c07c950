"""Driving the peer from the bench: its database, its environment, its worker commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from bench.common import BASE_DIR, libpq_url, with_database
from bench.interleave import CommandSide

PEER_DB = "bench_hordak"
PEER_PACKAGES = BASE_DIR / ".venv" / "bench-peer"
NAME = "django-hordak 2.0"
# What the peer does not do, which the project does on every post: said beside its figures.
CAVEATS = "the peer neither refuses overdrafts nor keeps idempotency keys"


def available() -> bool:
    """Whether ``make bench`` installed the peer's packages (bench/peer/requirements.txt)."""
    return (PEER_PACKAGES / "hordak").is_dir()


def peer_url(url: str) -> str:
    return with_database(url, PEER_DB)


def peer_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PEER_DATABASE_URL=peer_url(url),
        DJANGO_SETTINGS_MODULE="bench.peer.settings",
        # The peer's packages first, then the project (for bench.*); the interpreter is the
        # project's, whose site-packages give Django, psycopg and django-environ.
        PYTHONPATH=os.pathsep.join([str(PEER_PACKAGES), str(BASE_DIR)]),
    )
    env.pop("DATABASE_URL", None)
    return env


def ensure_database(url: str) -> None:
    admin = with_database(url, "postgres")
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PEER_DB]).fetchone():
            conn.execute(f'CREATE DATABASE "{PEER_DB}"')


def command(url: str, *args: str) -> Any:
    """Run a one-shot peer command; its JSON answer."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.peer.worker", *args],
        cwd=BASE_DIR,
        env=peer_env(url),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def setup(url: str, accounts: int) -> list[int]:
    ensure_database(url)
    return [int(i) for i in command(url, "setup", "--accounts", str(accounts))["accounts"]]


def transfer_side(url: str, account_ids: list[int], processes: int) -> CommandSide:
    return CommandSide(
        [
            sys.executable,
            "-m",
            "bench.peer.worker",
            "transfer",
            "--accounts",
            *(str(i) for i in account_ids),
        ],
        peer_env(url),
        processes,
        cwd=Path(BASE_DIR),
    )
