"""Before/after of the request log's cost: the same manifest GET load (wrk, c64) against
`moorage serve` from two installs side by side (``--before``: e.g. main's venv; ``--after``:
this tree's), each with the log off and with text and JSON lines, metrics on throughout.
Reports the servers' CPU time per request (the figure a shared machine disturbs least) and
what the log adds to it.

    .venv/bin/python bench/log_ab.py --before /work/main/.venv/bin/moorage [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import auth_overhead
import observability_overhead as obs

MODES = {
    "log off": {"MOORAGE_LOG__LEVEL": "warning"},
    "text log": {},
    "json log": {"MOORAGE_LOG__FORMAT": "json"},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the `moorage` of the install before")
    parser.add_argument("--after", default=str(Path(sys.executable).parent / "moorage"))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    cases = [(install, mode) for install in ("before", "after") for mode in MODES]
    cpu: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="moorage-log-ab-") as tmp:
        started = []
        try:
            for index, (install, mode) in enumerate(cases):
                binary = args.before if install == "before" else args.after
                server = obs.start(binary, Path(tmp) / str(index), args.workers, MODES[mode])
                started.append(server)
                auth_overhead.seed(server.url, None)
            for _ in range(args.rounds):
                for case, server in zip(cases, started, strict=True):
                    cpu[case].append(obs.measure(server, args.seconds).cpu_us_per_request)
        finally:
            for server in started:
                server.stop()
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")
    print(f"{'install':8} {'mode':10} {'CPU us/req':>11} {'log adds':>9}")
    for install in ("before", "after"):
        off = statistics.median(cpu[install, "log off"])
        for mode in MODES:
            median = statistics.median(cpu[install, mode])
            print(f"{install:8} {mode:10} {median:11.1f} {median - off:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
