"""Percentiles, medians, the result rows, the table and bench/results.json."""

from __future__ import annotations

import json
import math
import operator
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def percentile(sorted_values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(math.ceil(pct / 100 * len(sorted_values)), 1)
    return sorted_values[min(rank, len(sorted_values)) - 1]


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Result:
    """One row: `value` is the project's median over rounds, `baseline` the baseline's."""

    name: str
    unit: str
    value: float | None
    baseline: float | None
    target: str
    """`ratio >= 0.25`, `ratio <= 3` or `value <= 150`: which number, which way, how far."""
    errors: int = 0
    rounds: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    floor: float | None = None
    """The raw floor's median (bench/floor.py: an order's I/O with none of the logic), same unit."""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def floor_ratio(self) -> float | None:
        """The floor against the same baseline: about the best ratio this I/O allows here."""
        if self.floor is None or not self.baseline:
            return None
        return self.floor / self.baseline

    @property
    def met(self) -> bool | None:
        subject, comparison, bound = self.target.split()
        number = self.ratio if subject == "ratio" else self.value
        if number is None:
            return None
        return _COMPARE[comparison](number, float(bound))

    def row(self) -> dict[str, Any]:
        """The results.json row (exactly the agreed keys)."""
        return {
            "name": self.name,
            "unit": self.unit,
            "value": _rounded(self.value),
            "baseline": _rounded(self.baseline),
            "ratio": _rounded(self.ratio),
            "target": self.target,
        }


def _rounded(number: float | None) -> float | None:
    if number is None:
        return None
    return round(number, 3) if abs(number) < 100 else round(number, 1)


def _shown(number: float | None) -> str:
    if number is None:
        return "-"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) >= 100:
        return f"{number:.1f}"
    return f"{number:.3g}" if abs(number) < 1 else f"{number:.2f}"


def table(results: Sequence[Result]) -> str:
    """A Markdown table: paste-able into the README as it is."""
    header = [
        "scenario",
        "unit",
        "project",
        "baseline",
        "ratio",
        "target",
        "met",
        "errors",
        "raw floor",
        "floor ratio",
    ]
    rows = [header, ["---"] * len(header)]
    for r in results:
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        errors = str(r.errors) if r.errors == 0 else f"**{r.errors}**"
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        floor_ratio = "-" if r.floor_ratio is None else f"{r.floor_ratio:.3f}"
        measured = [r.name, r.unit, _shown(r.value), _shown(r.baseline), ratio, r.target, met, errors]
        rows.append([*measured, _shown(r.floor), floor_ratio])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = ["-" * widths[i] if row[i] == "---" else row[i].ljust(widths[i]) for i in range(len(row))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
    }


def write_results(path: Path, results: Sequence[Result], extra: dict[str, Any]) -> None:
    document = {
        "results": [r.row() for r in results],
        "machine": machine(),
        "details": {
            r.name: {
                "errors": r.errors,
                "met": r.met,
                "note": r.note,
                **(
                    {"floor": _rounded(r.floor), "floor_ratio": _rounded(r.floor_ratio)}
                    if r.floor is not None
                    else {}
                ),
                "rounds": r.rounds,
            }
            for r in results
        },
        **extra,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def as_dict(result: Result) -> dict[str, Any]:
    return asdict(result)
