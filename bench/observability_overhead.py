"""What metrics and the request log cost: manifest GET requests/s at concurrency 64 (wrk)
against `moorage serve` with both off, with metrics only, and with metrics plus one log line
per request (text, and JSON). Goal: metrics + log >= 90% of both off.

    .venv/bin/python bench/observability_overhead.py [--seconds 6] [--rounds 5] [--workers 2]

Every mode has its own server, all running side by side over their own data; the modes take
turns round after round, so drift in the machine's speed hits each alike, and the median
round is reported. The log goes to a file, as under systemd or a container runtime it goes to
a pipe. Figures taken while other work runs on the machine are noise, not results: the load
average is printed first for that reason.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import auth_overhead
import loadgen
import servers

GOAL = 0.90
MODES: dict[str, dict[str, str]] = {
    "both off": {"MOORAGE_METRICS__ENABLED": "false", "MOORAGE_LOG__LEVEL": "warning"},
    "metrics only": {"MOORAGE_LOG__LEVEL": "warning"},
    "metrics + text log": {},
    "metrics + json log": {"MOORAGE_LOG__FORMAT": "json"},
}


def start(
    moorage_bin: str, workdir: Path, workers: int, env: dict[str, str]
) -> servers.ManagedServer:
    server = servers.moorage_server(moorage_bin, workdir, workers)
    # Defaults everywhere else, whatever the caller's environment says.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    server.env = {**inherited, **env}
    server.start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--moorage-bin", default=str(Path(sys.executable).parent / "moorage"))
    args = parser.parse_args()
    one, five, _ = os.getloadavg()
    print(f"load average before the run: {one:.2f} (1 min), {five:.2f} (5 min) on "
          f"{os.cpu_count()} cores")  # fmt: skip
    rounds: dict[str, list[loadgen.LoadResult]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="moorage-observability-bench-") as tmp:
        started = []
        try:
            for index, env in enumerate(MODES.values()):
                server = start(args.moorage_bin, Path(tmp) / str(index), args.workers, env)
                started.append(server)
                auth_overhead.seed(server.url, None)
            for _ in range(args.rounds):
                for (mode, _env), server in zip(MODES.items(), started, strict=True):
                    rounds[mode].append(auth_overhead.measure(server.url, args.seconds, {}))
        finally:
            for server in started:
                server.stop()
    results = {
        mode: sorted(runs, key=lambda r: r.requests_per_s)[len(runs) // 2]
        for mode, runs in rounds.items()
    }
    base = results["both off"].requests_per_s
    print(f"manifest GET, c64, {args.seconds}s x {args.rounds} rounds, workers={args.workers}")
    print(f"{'mode':20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs off':>7}")
    for mode, result in results.items():
        print(
            f"{mode:20} {result.requests_per_s:9.0f} {result.p50_ms:8.2f} {result.p99_ms:8.2f} "
            f"{result.requests_per_s / base:7.2f}"
        )
    worst = min(results[m].requests_per_s for m in MODES if "log" in m) / base
    verdict = "meets" if worst >= GOAL else "misses"
    print(f"metrics + log: {worst:.2f} of both off ({verdict} the goal of {GOAL:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
