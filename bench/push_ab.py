#!/usr/bin/env python3
"""Two builds of Moorage side by side on the 4 KiB pushes: server CPU and system calls per push.

    .venv/bin/python bench/push_ab.py --before /work/main/.venv/bin/moorage
    .venv/bin/python bench/push_ab.py --before A/bin/moorage --after B/bin/moorage --rounds 6

Starts `moorage serve --workers 2` from each build (own data directories) and, in rounds whose
order swaps, pushes distinct 4 KiB blobs at c16 to each (`bench/push.py`'s small_put and
small_patch). Prints blobs/s and the server's CPU per push (every process of it), then counts
every system call per push with `strace -f -c` (`--strace-pushes`; 0: skip). On a machine busy
with other work the rates move with the load; CPU per push moves less, and the counts not at all,
which is what this is for: a before/after of a change to the push path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
from pathlib import Path

import servers
from push import count_syscalls, small_push
from run import default_moorage_bin

PHASES = ("small_put", "small_patch")


def print_syscalls(phase: str, counts: dict[str, dict[str, float]]) -> None:
    totals = ", ".join(f"{n} {sum(c.values()):.0f}" for n, c in counts.items())
    print(f"\nsystem calls per {phase} push ({' / '.join(counts)}): {totals}")

    def most(call: str) -> float:
        return max(c.get(call, 0.0) for c in counts.values())

    for call in sorted(set().union(*counts.values()), key=most, reverse=True):
        if most(call) >= 0.5:
            row = "  ".join(f"{c.get(call, 0.0):8.2f}" for c in counts.values())
            print(f"  {call:<16} {row}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--before", required=True, help="moorage executable of the first build")
    ap.add_argument("--after", default=default_moorage_bin(), help="of the second (this one)")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0, help="each push run")
    ap.add_argument("--strace-pushes", type=int, default=300)
    ap.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    phases = args.phases.split(",")
    print(f"load average at the start: {os.getloadavg()[0]:.2f}", flush=True)
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.work_dir)))
        builds: dict[str, servers.ManagedServer] = {}
        for name, binary in (("before", args.before), ("after", args.after)):
            (work / name).mkdir()
            server = servers.moorage_server(binary, work / name, 2, name=name)
            builds[name] = stack.enter_context(server)
        for phase in phases:  # warm-up: connections, worker start-up, first rows
            for server in builds.values():
                small_push(server, phase, 1.0)
        figures: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in range(args.rounds):
            order = list(builds) if r % 2 == 0 else list(builds)[::-1]
            line = []
            for phase in phases:
                for name in order:
                    rate, _, cpu_ms = small_push(builds[name], phase, args.seconds)
                    figures.setdefault((name, phase), []).append((rate, cpu_ms))
                    line.append(f"{name} {phase} {rate:.0f}/s {cpu_ms:.2f} ms")
            print(f"round {r + 1} (load {os.getloadavg()[0]:.2f}): " + ", ".join(line), flush=True)
        print()
        for phase in phases:
            for name in builds:
                rates = [f[0] for f in figures[(name, phase)]]
                cpus = [f[1] for f in figures[(name, phase)]]
                print(
                    f"{phase} {name}: {statistics.median(rates):.0f} blobs/s "
                    f"({min(rates):.0f}-{max(rates):.0f}), server CPU "
                    f"{statistics.median(cpus):.2f} ms per push ({min(cpus):.2f}-{max(cpus):.2f})"
                )
        if args.strace_pushes:
            for phase in phases:
                print_syscalls(phase, {n: count_syscalls(s, phase, args.strace_pushes, trace=None)
                                       for n, s in builds.items()})  # fmt: skip
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
