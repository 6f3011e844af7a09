"""Figures and how they are shown: a markdown table per stack on stdout, and
``docs/benchmarks.md`` with the machine, the settings, the tables and the methods.

A figures module (``bench.api``, ``bench.streams``, ``bench.browser``) returns a list of
``Figure`` from ``figures(server, quick)``; it may also define ``METHODS: str``, the
markdown paragraphs saying how its figures are measured, copied into the document.
"""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
VERSIONED = ("uvicorn", "uvloop", "httptools", "starlette", "SQLAlchemy", "aiosqlite", "asyncpg",
             "redis", "sse-starlette")


@dataclass
class Figure:
    name: str
    unit: str  # "ms", "µs", "/s", "KB", "statements", ...
    ours: float
    baseline: float | None
    baseline_name: str
    goal: str  # e.g. "≤ 4 ms"; "" when the figure is context only
    met: bool | None  # None: no goal
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / baseline: above 1 is our overhead for a time or a size, below 1 our
        shortfall for a rate."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


def number(value: float, unit: str) -> str:
    if abs(value) >= 100 or value == int(value):
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text}/s" if unit == "/s" else f"{text} {unit}"


def table(figures: list[Figure]) -> str:
    lines = ["| figure | ours | baseline | ours/baseline | goal | met |", "|---|---|---|---|---|---|"]
    for f in figures:
        base = f"{number(f.baseline, f.unit)} ({f.baseline_name})" if f.baseline is not None else \
            (f.baseline_name or "–")
        ratio = f"{f.ratio:.2f}×" if f.ratio is not None else "–"
        met = "–" if f.met is None else ("yes" if f.met else "**no**")
        name = f"{f.name}<br><sub>{f.note}</sub>" if f.note else f.name
        lines.append(f"| {name} | {number(f.ours, f.unit)} | {base} | {ratio} | {f.goal or '–'} | {met} |")
    return "\n".join(lines)


def print_table(stack: str, figures: list[Figure]) -> None:
    """On stdout, for ``make bench``; notes go under the table (no HTML line breaks)."""
    print(f"\n## {stack}\n")
    plain = [Figure(**{**f.__dict__, "note": ""}) for f in figures]
    print(table(plain))
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        print("\n" + "\n".join(notes))


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or "unknown")
    mem_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    versions = []
    for name in VERSIONED:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "packages": ", ".join(versions),
    }


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def write_document(
    tables: dict[str, list[Figure]], settings: dict[str, str], methods: list[str], load: dict[str, str],
    path: Path = DOC,
) -> None:
    """``docs/benchmarks.md``: what ran where, one table per stack, how it was measured."""
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); every figure has its baseline measured "
        "in the same run, on the same machine, over loopback. *ours/baseline* above 1 is our "
        "overhead for a time, below 1 our shortfall for a rate.",
        "",
        f"Run: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine().items()],
        *[f"- load average (1/5/15 min) {when}: {value}" for when, value in load.items()],
        "",
        "## Settings",
        "",
        *[f"- {k}: {v}" for k, v in settings.items()],
    ]
    for stack, figures in tables.items():
        parts += ["", f"## {stack}", "", table(figures)]
    parts += ["", "## How each figure is measured", "", *[m.strip() + "\n" for m in methods if m.strip()]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts).rstrip() + "\n")
