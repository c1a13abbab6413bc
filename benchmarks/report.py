"""Shared report writing: conditions header, a Markdown table, the CSV beside it, interleaved timing."""

from __future__ import annotations

import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

REPORTS = Path(__file__).resolve().parent / "reports"
REPO_ROOT = Path(__file__).resolve().parent.parent


def rss_mb(pid: int | None = None, field: str = "VmRSS") -> float:
    """Resident set size of process ``pid`` (this one by default), MiB, from /proc; ``field="VmHWM"``
    gives its peak since the process started."""
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def command_line(argv: list[str] | None = None) -> str:
    """The command that made a report, as a reader can type it: ``python -m staa_serve.benchmarks.kernels
    ...`` (argv[0] is then the module's file) or ``staa-bench hostile ...``."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return ""
    script = Path(argv[0])
    if script.suffix == ".py":
        try:
            module = ".".join(["staa_serve", *script.resolve().relative_to(REPO_ROOT).with_suffix("").parts])
            return " ".join(["python", "-m", module, *argv[1:]])
        except ValueError:  # a script outside the repository
            return " ".join(["python", *argv])
    return " ".join([script.name, *argv[1:]])


def conditions(extra: dict[str, str]) -> dict[str, str]:
    """What every report states about how it was measured."""
    return {
        "command": command_line(),
        "device": f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores",
        "torch threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **extra,
    }


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[column]) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write_markdown(path: Path, title: str, conditions_: dict[str, str], sections: list[str]) -> None:
    header = [f"# {title}", "", "Conditions:", ""]
    header += [f"- {key}: {value}" for key, value in conditions_.items()]
    path.write_text("\n".join(header + [""] + sections) + "\n")


def interleaved(first: Callable[[], None], second: Callable[[], None], pairs: int, warmup: int = 3):
    """Time A and B in pairs after warm-up, alternating which goes first (A B, B A, A B ...) so that
    neither always runs on the caches and allocations the other left; returns (A seconds list,
    B seconds list, median of the per-pair B/A ratios)."""
    for _ in range(warmup):
        first()
        second()

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    times_a, times_b = [], []
    for index in range(pairs):
        if index % 2 == 0:
            times_a.append(timed(first))
            times_b.append(timed(second))
        else:
            times_b.append(timed(second))
            times_a.append(timed(first))
    ratio = statistics.median(b / a for a, b in zip(times_a, times_b))
    return times_a, times_b, ratio
