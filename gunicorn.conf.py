"""gunicorn settings read from the working directory (``make serve``, the Dockerfile, the tests).

Only what the metrics need: with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its
counters to that directory and ``/metrics`` adds them up (``core_ledger.metrics``). The files of
an earlier run are removed when the server starts, and a worker that exits is marked dead.
Everything else stays on the command line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
