"""Posts from N processes, interleaved: the project, its psycopg baseline and the peer.

Scenarios 1 and 2 run the three side by side in short slices (``bench.interleave``): the
project's ``entry_post`` of CREDIT_SPEND 1, the same two statements with plain psycopg, and
django-hordak's ``Account.transfer_to`` of 1 EUR (its unit of posting: a transaction and two
legs). Each figure is the median of its slices; the spread column shows the slices' ± range.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import workers
from bench.interleave import ForkedSide, Side, Slices, interleave, ratio_spread, show
from bench.peer import run as peer
from bench.report import Context, Row


@dataclass
class Peer:
    """The peer's accounts, when its packages are installed (``make bench`` does)."""

    url: str
    accounts: list[int]

    @classmethod
    def prepare(cls, url: str, accounts: int) -> Peer | None:
        if not peer.available():
            print("  (peer not installed: run `make bench` to install bench/peer/requirements.txt)")
            return None
        return cls(url, peer.setup(url, accounts))


def compare(
    ctx: Context,
    *,
    label: str,
    processes: int,
    user_ids: list[int],
    peer_accounts: list[int] | None,
    rounds: int,
    seconds: float,
    psycopg_target: float | None,
    peer_target: float | None,
) -> tuple[list[Row], dict[str, object]]:
    """Interleave the sides for one configuration; its rows (vs psycopg, vs the peer)."""
    sides: dict[str, object] = {
        "project": lambda: ForkedSide(workers.service_spend(user_ids), processes),
        "psycopg": lambda: ForkedSide(workers.psycopg_spend(ctx.url, user_ids), processes),
    }
    if peer_accounts is not None:
        sides["peer"] = lambda: peer.transfer_side(ctx.url, peer_accounts, processes)
    got = interleave(sides, rounds=rounds, seconds=seconds)  # type: ignore[arg-type]
    show(label, got, seconds)
    project, baseline = got["project"], got["psycopg"]
    rows = [_row(label, project, baseline, psycopg_target, "psycopg")]
    if "peer" in got:
        rows.append(_row(label, project, got["peer"], peer_target, "peer"))
    if processes == 1:
        rows.extend(_cpu_rows(label, project, baseline))
    return rows, {name: slices.summary() for name, slices in got.items()}


CPU_TARGET_MS = 0.4  # issue "One round trip per post": client and server CPU per post


def _cpu_rows(label: str, project: Slices, baseline: Slices) -> list[Row]:
    """Client and server CPU per post against the 0.4 ms target (lower is better), with the
    psycopg baseline's own figures in the detail."""
    ours, theirs = project.merged.cpu_per_op(), baseline.merged.cpu_per_op()
    rows = []
    for i, side in enumerate(("client", "server")):
        mine, base = ours[i], theirs[i]
        if mine is None:  # the server's /proc is out of reach (a remote DATABASE_URL)
            print(f"  {label}: {side} CPU per post not measured (the server is not local)")
            continue
        rows.append(
            Row(
                f"{label}: {side} CPU per post",
                "ms CPU/post",
                mine,
                CPU_TARGET_MS,
                max_ratio=1.0,
                detail=f"target {CPU_TARGET_MS} ms; psycopg baseline "
                + ("n/a" if base is None else f"{base:.3f} ms"),
            )
        )
    return rows


def _row(label: str, project: Slices, other: Slices, target: float | None, kind: str) -> Row:
    versus = "" if kind == "psycopg" else f" vs {peer.NAME} transfer"
    return Row(
        f"{label}{versus}",
        "entries/s",
        project.median,
        other.median,
        target=target,
        spread=f"±{project.spread:.0%} / ±{other.spread:.0%} (ratio ±{ratio_spread(project, other):.0%})",
        detail=(
            f"p50/p99 {project.pct(50):.2f}/{project.pct(99):.2f} ms vs "
            f"{other.pct(50):.2f}/{other.pct(99):.2f} ms"
            + ("" if kind == "psycopg" else f"; {peer.CAVEATS}")
        ),
    )


__all__ = ["Peer", "Side", "compare"]
