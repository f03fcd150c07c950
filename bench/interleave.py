"""Interleaved runs: the project and its baselines take turns in short slices on the same machine.

Run one after the other, two 10-second runs see different machines (another process wakes up, the
disk flushes, the CPU clocks down) and their ratio moves by ±20%. Here every side starts its
worker processes once (each its own connection, warmed up), then the sides run in turns, A, B, A,
B, … (the order flipped every round, so neither always goes first), each for a short slice while
the others wait idle on a pipe. Each side's figure is the median of its slices, and the spread of
those slices says how much of a difference is noise.

A side is either a forked pool running a worker factory (the project, psycopg: see
``bench.common.WorkerFactory``) or a pool of commands speaking the same protocol on stdin/stdout
(the peer, which needs its own settings and packages: ``bench.peer.worker``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from bench.common import (
    Run,
    WorkerFactory,
    _close_django_connections,
    backend_pids,
    half_range,
    run_for,
    server_cpu,
)


def serve_slices(op: Callable[[Any], None], index: int, recv: Any, send: Any) -> None:
    """A worker's loop: warm up, say ready, then run ``op`` for each ``("go", seconds)`` received
    and send back (ops, errors, seconds, latencies); stop on ``("stop",)``."""
    import random

    rng = random.Random(index * 7919 + 1)
    for _ in range(3):  # warm-up: connection, caches, prepared statements
        op(rng)
    pids = backend_pids()
    send(("ready",))
    while True:
        command = recv()
        if command[0] != "go":
            return
        client, server = time.process_time(), server_cpu(pids)
        result = run_for(op, rng, float(command[1]))
        client = time.process_time() - client
        after = server_cpu(pids)
        used = None if server is None or after is None else after - server
        send(("done", *result, client, used))


class Side(Protocol):
    def go(self, seconds: float) -> Run: ...
    def stop(self) -> None: ...


def _merge(results: Sequence[tuple[Any, ...]]) -> Run:
    run = Run()
    for _, ops, errors, seconds, latencies, client, server in results:
        run.ops += ops
        run.errors += errors
        run.seconds = max(run.seconds, seconds)
        run.latencies.extend(latencies)
        run.client_cpu += client
        run.server_cpu = (
            None if server is None or run.server_cpu is None else run.server_cpu + server
        )
    return run


def _forked_worker(factory: WorkerFactory, index: int, conn: Any) -> None:
    try:
        op = factory(index)
        serve_slices(op, index, conn.recv, conn.send)
    except BaseException as exc:  # report set-up failures instead of leaving the parent waiting
        conn.send(("error", repr(exc)))


class ForkedSide:
    """``processes`` forked workers running ``factory``'s operation."""

    def __init__(self, factory: WorkerFactory, processes: int) -> None:
        ctx = mp.get_context("fork")
        _close_django_connections()
        self.pipes = []
        self.procs = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_forked_worker, args=(factory, i, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)
        for pipe in self.pipes:
            _expect_ready(pipe.recv() if pipe.poll(120) else ("error", "no answer in 120 s"))

    def go(self, seconds: float) -> Run:
        for pipe in self.pipes:
            pipe.send(("go", seconds))
        return _merge([pipe.recv() for pipe in self.pipes])

    def stop(self) -> None:
        for pipe in self.pipes:
            pipe.send(("stop",))
        for proc in self.procs:
            proc.join(timeout=30)


def _expect_ready(message: tuple[Any, ...]) -> None:
    if message[0] != "ready":
        raise RuntimeError(f"benchmark worker failed to start: {message}")


class CommandSide:
    """``processes`` copies of a command speaking JSON lines: ``["go", s]`` in, results out."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], processes: int, cwd: Any) -> None:
        self.procs = [
            subprocess.Popen(
                [*argv, "--index", str(i)],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for i in range(processes)
        ]
        for proc in self.procs:
            _expect_ready(self._read(proc))

    @staticmethod
    def _read(proc: subprocess.Popen[str]) -> tuple[Any, ...]:
        out: IO[str] | None = proc.stdout
        line = out.readline() if out is not None else ""
        if not line:
            raise RuntimeError(f"peer worker exited with {proc.wait(timeout=30)}")
        return tuple(json.loads(line))

    def go(self, seconds: float) -> Run:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(["go", seconds]) + "\n")
            proc.stdin.flush()
        return _merge([self._read(proc) for proc in self.procs])

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(["stop"]) + "\n")
            proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=30)


@dataclass
class Slices:
    """One side's slices: their rates, median and spread, and all latencies together."""

    runs: list[Run] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [run.rate for run in self.runs]

    @property
    def median(self) -> float:
        return statistics.median(self.rates) if self.runs else 0.0

    @property
    def spread(self) -> float:
        """Half the range of the slices' rates, as a fraction of their median (±)."""
        return half_range(self.rates) if self.runs else 0.0

    @property
    def merged(self) -> Run:
        return _merge(
            [
                ("done", r.ops, r.errors, r.seconds, r.latencies, r.client_cpu, r.server_cpu)
                for r in self.runs
            ]
        )

    def pct(self, q: float) -> float:
        return self.merged.pct(q)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)

    def summary(self) -> dict[str, Any]:
        return {
            "median_per_second": round(self.median, 1),
            "slices_per_second": [round(rate, 1) for rate in self.rates],
            "spread": round(self.spread, 3),
            "p50_ms": round(self.pct(50), 3),
            "p99_ms": round(self.pct(99), 3),
            "errors": self.errors,
            "client_cpu_ms": round(self.merged.cpu_per_op()[0], 4),
            "server_cpu_ms": _rounded(self.merged.cpu_per_op()[1]),
        }

    def text(self) -> str:
        return f"{self.median:,.0f}/s ±{self.spread:.0%}"

    def cpu_text(self) -> str:
        client, server = self.merged.cpu_per_op()
        return f"CPU/op client {client:.3f} ms, server " + (
            "n/a" if server is None else f"{server:.3f} ms"
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def interleave(
    sides: dict[str, Callable[[], Side]], *, rounds: int, seconds: float
) -> dict[str, Slices]:
    """Start every side, then run ``rounds`` rounds of one ``seconds`` slice per side, in turns
    (the order reversed every other round). Sides are started one after the other and all stopped
    at the end, whatever happens."""
    started: dict[str, Side] = {}
    try:
        for name, start in sides.items():
            started[name] = start()
        result = {name: Slices() for name in started}
        names = list(started)
        for round_ in range(rounds):
            for name in names if round_ % 2 == 0 else reversed(names):
                result[name].runs.append(started[name].go(seconds))
        return result
    finally:
        for side in started.values():
            with contextlib.suppress(Exception):  # a side that died already: nothing to stop
                side.stop()


def ratio_spread(project: Slices, baseline: Slices) -> float:
    """The spread (±, as a fraction) of the per-round ratios project/baseline."""
    ratios = [a.rate / b.rate for a, b in zip(project.runs, baseline.runs, strict=True) if b.rate]
    if not ratios:
        return 0.0
    mid = statistics.median(ratios)
    return (max(ratios) - min(ratios)) / 2 / mid if mid else 0.0


class HookedSide:
    """A side that runs ``before()`` ahead of each of its slices (its workers idle meanwhile):
    e.g. a trigger enabled for one side and disabled for the other."""

    def __init__(self, side: Side, before: Callable[[], None]) -> None:
        self.side = side
        self.before = before

    def go(self, seconds: float) -> Run:
        self.before()
        return self.side.go(seconds)

    def stop(self) -> None:
        self.side.stop()


def pair(
    label: str,
    project: Callable[[], Side],
    baseline: Callable[[], Side],
    *,
    rounds: int,
    seconds: float,
) -> tuple[Slices, Slices]:
    """Two sides interleaved (``rounds`` slices of ``seconds`` each); prints both lines."""
    got = interleave({"project": project, "baseline": baseline}, rounds=rounds, seconds=seconds)
    show(label, got, seconds)
    return got["project"], got["baseline"]


def show(label: str, got: dict[str, Slices], seconds: float) -> None:
    """One line per side: median rate and spread, latencies, slices, errors, CPU per op."""
    for name, slices in got.items():
        print(
            f"  {label}: {name:<8} {slices.text():>16}  p50 {slices.pct(50):6.2f} ms  "
            f"p99 {slices.pct(99):6.2f} ms  ({len(slices.runs)} slices of {seconds:g} s, "
            f"{slices.errors} errors)  {slices.cpu_text()}",
            flush=True,
        )


def spread_text(project: Slices, baseline: Slices) -> str:
    """The Spread column: each side's ± half-range over its slices, and the per-round ratio's."""
    return (
        f"±{project.spread:.0%} / ±{baseline.spread:.0%} "
        f"(ratio ±{ratio_spread(project, baseline):.0%})"
    )
