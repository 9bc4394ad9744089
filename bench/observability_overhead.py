"""What metrics and the request log cost: manifest GET requests/s at concurrency 64 (wrk)
against `moorage serve` with both off, with metrics only, and with metrics plus one log line
per request (text, and JSON). Goal: metrics + log >= 90% of both off.

    .venv/bin/python bench/observability_overhead.py [--seconds 6] [--rounds 5] [--workers 2]

Every mode has its own server, all running side by side over their own data; the modes take
turns round after round, so drift in the machine's speed hits each alike, and the median
round is reported. The log goes to a file, as under systemd or a container runtime it goes to
a pipe. Figures taken while other work runs on the machine are noise, not results: the load
average is printed first for that reason. The servers' CPU time per request (all their
processes, from /proc) is printed too: it moves far less than requests/s when the machine is
shared, and a server that saturates its cores serves in inverse proportion to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
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


@dataclass
class Round:
    requests_per_s: float
    p99_ms: float
    cpu_us_per_request: float


def measure(server: servers.ManagedServer, seconds: int) -> Round:
    target = f"{server.url}/v2/{auth_overhead.REPO}/manifests/v1"
    headers = {"Accept": auth_overhead.OCI_MANIFEST}
    loadgen.run_wrk(target, seconds=2, connections=64, headers=headers)  # warm up
    cpu = server.cpu_probe()
    before = cpu()
    result = loadgen.run_wrk(target, seconds=seconds, connections=64, headers=headers)
    spent = cpu() - before
    return Round(result.requests_per_s, result.p99_ms, spent / max(result.requests, 1) * 1e6)


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
    rounds: dict[str, list[Round]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="moorage-observability-bench-") as tmp:
        started = []
        try:
            for index, env in enumerate(MODES.values()):
                server = start(args.moorage_bin, Path(tmp) / str(index), args.workers, env)
                started.append(server)
                auth_overhead.seed(server.url, None)
            for _ in range(args.rounds):
                for (mode, _env), server in zip(MODES.items(), started, strict=True):
                    rounds[mode].append(measure(server, args.seconds))
        finally:
            for server in started:
                server.stop()

    def median(mode: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in rounds[mode]))

    base_rate = median("both off", "requests_per_s")
    base_cpu = median("both off", "cpu_us_per_request")
    print(f"manifest GET, c64, {args.seconds}s x {args.rounds} rounds, workers={args.workers}")
    print(f"{'mode':20} {'req/s':>9} {'p99 ms':>8} {'vs off':>7} {'CPU us/req':>11} {'vs off':>7}")
    for mode in MODES:
        rate, cpu = median(mode, "requests_per_s"), median(mode, "cpu_us_per_request")
        print(
            f"{mode:20} {rate:9.0f} {median(mode, 'p99_ms'):8.2f} {rate / base_rate:7.2f} "
            f"{cpu:11.1f} {base_cpu / cpu:7.2f}"
        )
    logged = [mode for mode in MODES if "log" in mode]
    by_rate = min(median(mode, "requests_per_s") for mode in logged) / base_rate
    by_cpu = base_cpu / max(median(mode, "cpu_us_per_request") for mode in logged)
    for what, ratio in (("requests/s", by_rate), ("CPU per request", by_cpu)):
        verdict = "meets" if ratio >= GOAL else "misses"
        print(f"metrics + log, by {what}: {ratio:.2f} of both off ({verdict} the goal {GOAL:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
