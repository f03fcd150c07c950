"""The figures: rows of the final table, the JSON record, and the live printing as a run goes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.common import Run


@dataclass
class Row:
    """One line of the table: project figure, baseline figure, their ratio and the target.

    ``target`` is the minimum ratio (project / baseline) unless ``max_ratio`` is set, in which
    case the ratio must stay at or under it (latencies: lower is better). ``extra_ok`` folds in a
    condition that is not a ratio (e.g. the bulk grant's absolute rate).
    """

    scenario: str
    unit: str
    project: float
    baseline: float
    target: float | None = None
    max_ratio: float | None = None
    extra_ok: bool | None = None
    extra_target: str = ""
    detail: str = ""
    spread: str = ""  # interleaved runs: the spread of the slices, project / baseline

    @property
    def ratio(self) -> float | None:
        return self.project / self.baseline if self.baseline else None

    @property
    def target_text(self) -> str:
        parts = []
        if self.target is not None:
            parts.append(f">= {self.target:g}")
        if self.max_ratio is not None:
            parts.append(f"<= {self.max_ratio:g}")
        if self.extra_target:
            parts.append(self.extra_target)
        return ", ".join(parts) or "-"

    @property
    def met(self) -> bool | None:
        checks: list[bool] = []
        r = self.ratio
        if self.target is not None:
            checks.append(r is not None and r >= self.target)
        if self.max_ratio is not None:
            checks.append(r is not None and r <= self.max_ratio)
        if self.extra_ok is not None:
            checks.append(self.extra_ok)
        return all(checks) if checks else None

    def as_dict(self) -> dict[str, Any]:
        r = self.ratio
        return {
            "scenario": self.scenario,
            "unit": self.unit,
            "project": round(self.project, 3),
            "baseline": round(self.baseline, 3),
            "ratio": None if r is None else round(r, 3),
            "target": self.target_text,
            "met": self.met,
            "detail": self.detail,
            "spread": self.spread,
        }


@dataclass
class Context:
    """What a scenario gets: the bench database, the size switch, and where to put figures."""

    url: str
    smoke: bool
    figures: dict[str, Any] = field(default_factory=dict)

    def show(self, label: str, run: Run) -> None:
        print(
            f"  {label:<38} {run.rate:>9.1f}/s  p50 {run.pct(50):7.2f} ms  "
            f"p99 {run.pct(99):7.2f} ms  ({run.ops} ops, {run.errors} errors, {run.seconds:.1f} s)",
            flush=True,
        )

    def record(self, scenario: str, figures: dict[str, Any]) -> None:
        self.figures[scenario] = figures


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Row]) -> str:
    """The final table, as Markdown (it reads well in a terminal and pastes into the README)."""
    head = ["Scenario", "Unit", "Project", "Baseline", "Ratio", "Spread", "Target", "Met"]
    body = []
    for row in rows:
        r = row.ratio
        met = row.met
        body.append(
            [
                row.scenario,
                row.unit,
                _fmt(row.project),
                _fmt(row.baseline),
                "-" if r is None else f"{r:.2f}",
                row.spread or "-",
                row.target_text,
                "-" if met is None else ("yes" if met else "NO"),
            ]
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for b in body:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |")
    return "\n".join(lines)


def dump(path: Any, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
