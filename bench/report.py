"""What the alternated-rounds benchmarks (ceiling.py, skopeo_copy.py) print and write alike: the
machine's state at the start and end, medians with their spread, aligned tables, the JSON."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from run import other_cpu_busy


def say(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class Machine:
    """The command and how busy the machine was: figures taken on a busy one are indications."""

    command: str = field(default_factory=lambda: shlex.join([sys.executable, *sys.argv]))
    started: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )
    host: str = field(default_factory=platform.node)
    cpus: int | None = field(default_factory=os.cpu_count)
    busy_at_start: float = field(default_factory=other_cpu_busy)
    loadavg_start: tuple[float, float, float] = field(default_factory=os.getloadavg)
    loadavg_end: tuple[float, float, float] | None = None

    def print_start(self, extra: str = "") -> None:
        say(f"command: {self.command}")
        say(
            f"started: {self.started}  host: {self.host}  cpus: {self.cpus}  load average: "
            f"{self.loadavg_start[0]:.2f}  CPU busy with other work: {self.busy_at_start:.0%}"
            + extra
        )

    def finish(self) -> str:
        """Note the end; a line for the report."""
        self.loadavg_end = os.getloadavg()
        return (
            f"machine: {self.cpus} CPUs; load average {self.loadavg_start[0]:.2f} at the start, "
            f"{self.loadavg_end[0]:.2f} at the end; CPU busy with other work at the start: "
            f"{self.busy_at_start:.0%}"
        )


def median_text(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):,.{digits}f}"


def spread_text(values: list[float], digits: int = 0) -> str:
    if not values:
        return "-"
    return f"{min(values):,.{digits}f}-{max(values):,.{digits}f}"


def ratio_text(values: list[float]) -> str:
    """Per-round ratios: median (min-max)."""
    if not values:
        return ""
    return f"{median_text(values, 2)}x ({spread_text(values, 2)})"


def print_table(headers: list[str], rows: list[list[str]], left: int = 1) -> None:
    """Columns aligned; the first ``left`` to the left, the figures to the right."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" if i < left else f"{{:>{w}}}" for i, w in enumerate(widths))
    say(line.format(*headers))
    say("  ".join("-" * w for w in widths))
    for row in rows:
        say(line.format(*row))


def write_json(path: Path | None, out: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    say(f"wrote {path}")
