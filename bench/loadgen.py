"""Run the HTTP load generators (wrk, and ab for HEAD) against one URL and parse their reports."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LAT = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors:\s+(.*)")


class LoadError(RuntimeError):
    pass


@dataclass
class LoadResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: str
    command: str
    output: str


def parse_wrk(output: str, command: str = "") -> LoadResult:
    rps = _RPS.search(output)
    if rps is None:
        raise LoadError(f"cannot find Requests/sec in wrk output:\n{output}")
    lat = {m.group(1): float(m.group(2)) * _UNITS_MS[m.group(3)] for m in _LAT.finditer(output)}
    if "99" not in lat or "50" not in lat:
        raise LoadError(f"cannot find the latency distribution in wrk output:\n{output}")
    total = _TOTAL.search(output)
    non2xx = _NON2XX.search(output)
    sockerr = _SOCKERR.search(output)
    return LoadResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=lat["50"],
        p99_ms=lat["99"],
        requests=int(total.group(1)) if total else 0,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sockerr.group(1).strip() if sockerr else "",
        command=command,
        output=output,
    )


def run_wrk(
    url: str,
    *,
    wrk: str = "wrk",
    threads: int = 2,
    connections: int = 64,
    seconds: int = 10,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """`wrk -tT -cC -dDs --latency [-H ...] URL` (GET), parsed."""
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    command = " ".join(a if " " not in a else f"'{a}'" for a in argv)
    if proc.returncode != 0:
        raise LoadError(f"{command} exited {proc.returncode}: {proc.stderr or proc.stdout}")
    return parse_wrk(proc.stdout, command)


_AB_RPS = re.compile(r"^Requests per second:\s+([\d.]+)", re.MULTILINE)
_AB_PCT = re.compile(r"^\s*(50|99)%\s+(\d+)", re.MULTILINE)
_AB_COMPLETE = re.compile(r"^Complete requests:\s+(\d+)", re.MULTILINE)
_AB_FAILED = re.compile(r"^Failed requests:\s+(\d+)", re.MULTILINE)
_AB_NON2XX = re.compile(r"^Non-2xx responses:\s+(\d+)", re.MULTILINE)
_AB_KEEPALIVE = re.compile(r"^Keep-Alive requests:\s+(\d+)", re.MULTILINE)


def parse_ab(output: str, command: str = "") -> LoadResult:
    rps = _AB_RPS.search(output)
    pct = {m.group(1): float(m.group(2)) for m in _AB_PCT.finditer(output)}
    complete = _AB_COMPLETE.search(output)
    if rps is None or "99" not in pct or "50" not in pct or complete is None:
        raise LoadError(f"cannot parse ab output:\n{output}")
    failed = _AB_FAILED.search(output)
    non2xx = _AB_NON2XX.search(output)
    keepalive = _AB_KEEPALIVE.search(output)
    total = int(complete.group(1))
    notes = []
    if failed and int(failed.group(1)):
        notes.append(f"failed {failed.group(1)}")
    if keepalive is None or int(keepalive.group(1)) < total:
        notes.append(f"keep-alive only {keepalive.group(1) if keepalive else 0} of {total}")
    return LoadResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=pct["50"],
        p99_ms=pct["99"],
        requests=total,
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=", ".join(notes),
        command=command,
        output=output,
    )


def run_ab_head(
    url: str, *, ab: str = "ab", connections: int = 64, seconds: int = 10
) -> LoadResult:
    """HEAD load with ApacheBench (`ab -k -i`): wrk 4.1 cannot do HEAD, its parser waits for
    the body that the response's Content-Length announces (wg/wrk#198). ab reports latency
    percentiles in whole milliseconds."""
    # -n after -t: -t alone caps the run at 50000 requests.
    argv = [
        ab,
        "-q",
        "-k",
        "-i",
        "-c",
        str(connections),
        "-t",
        str(seconds),
        "-n",
        "100000000",
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    command = " ".join(argv)
    if proc.returncode != 0:
        raise LoadError(f"{command} exited {proc.returncode}: {proc.stderr or proc.stdout}")
    return parse_ab(proc.stdout, command)
