#!/usr/bin/env python3
"""Benchmark a registry against Debian's docker-registry (distribution 2.8) in one run.

    .venv/bin/python bench/run.py --start-moorage [--workers N]
    .venv/bin/python bench/run.py --target-url http://127.0.0.1:5000
    .venv/bin/python bench/run.py --start-moorage --quick          # smoke run, ~30 s

The script starts distribution itself (loopback port, temporary filesystem root), runs the
same measurements against it and against the registry under test, one after the other, and
prints a table of figures with ratios against the targets. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import loadgen
import rawaio
import refspeed
import servers
from ociclient import OCI_MANIFEST, BlobSource, Image, Registry, make_image

MiB = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent
PHASES = ("push", "pull", "manifest", "head", "small", "catalog")
BIG_BLOBS = ("mono", "stream", "chunked")


@dataclass
class Params:
    size_mib: int = 1024
    chunk_mib: int = 16
    pull_repeats: int = 3
    load_seconds: int = 10
    warmup_seconds: int = 2
    load_threads: int = 2
    load_connections: int = 64
    small_seconds: float = 10.0
    small_max_blobs: int = 1_000_000
    small_concurrency: int = 16
    small_size: int = 4096
    catalog_repos: int = 2000
    catalog_page: int = 1000
    catalog_samples: int = 50
    setup_concurrency: int = 16

    @classmethod
    def quick(cls) -> Params:
        return cls(
            size_mib=32,
            pull_repeats=1,
            load_seconds=3,
            warmup_seconds=1,
            small_seconds=3.0,
            catalog_repos=150,
            catalog_page=100,
            catalog_samples=10,
        )


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    target: float | None  # minimum ratio, oriented so that > 1 means the target registry wins
    strict: bool = False  # target must be exceeded, not just reached
    group: str = "main"  # "main" figures, or "cpu": server CPU cost (servers we can see)

    def ratio(self, dist: float, other: float) -> float | None:
        if self.higher_is_better:
            return other / dist if dist > 0 else None
        return dist / other if other > 0 else None

    def target_text(self) -> str:
        if self.target is None:
            return "(info)"
        if self.strict:
            return "lower" if not self.higher_is_better else f"> {self.target:g}x"
        if not self.higher_is_better:
            return f"<= 1/{self.target:g} (>= {self.target:g}x)"
        return f">= {self.target:g}x"

    def met(self, ratio: float | None) -> bool | None:
        if self.target is None or ratio is None:
            return None
        return ratio > self.target if self.strict else ratio >= self.target


def metric_phase(key: str) -> str:
    """The --phases name that produces metric `key`."""
    prefixes = {
        "push_": "push",
        "pull": "pull",
        "manifest_": "manifest",
        "blob_head": "head",
        "small_": "small",
        "catalog_": "catalog",
    }
    return next(ph for pre, ph in prefixes.items() if key.startswith(pre))


def metrics_for(p: Params) -> list[Metric]:
    size = f"{p.size_mib} MiB" if p.size_mib % 1024 else f"{p.size_mib // 1024} GiB"
    page = p.catalog_page
    return [
        Metric("push_mono", f"push {size}: monolithic POST ?digest=", "MiB/s", True, 2.0),
        Metric("push_stream", f"push {size}: POST, streamed PATCH, PUT", "MiB/s", True, 2.0),
        Metric("push_chunked", f"push {size}: {p.chunk_mib} MiB PATCHes + PUT", "MiB/s", True, 2.0),
        Metric("pull", f"pull {size}: GET blob", "MiB/s", True, 1.0),
        Metric("manifest_get_rps", "manifest GET, c64 (wrk)", "req/s", True, 3.0),
        Metric("manifest_get_p99", "manifest GET p99", "ms", False, 1.0, strict=True),
        Metric("manifest_get_p50", "manifest GET p50", "ms", False, None),
        Metric("blob_head_rps", "blob HEAD, c64 (ab)", "req/s", True, 3.0),
        Metric("blob_head_p99", "blob HEAD p99 (ab, whole ms)", "ms", False, 1.0, strict=True),
        Metric(
            "small_push_rate",
            f"{p.small_size // 1024} KiB blob push, c{p.small_concurrency}",
            "blobs/s",
            True,
            2.0,
        ),
        Metric("small_push_p99", f"{p.small_size // 1024} KiB blob push p99", "ms", False, None),
        Metric("catalog_p1_median", f"catalog n={page} page 1 median", "ms", False, 2.0),
        Metric("catalog_p1_p99", f"catalog n={page} page 1 p99", "ms", False, None),
        Metric("catalog_p2_median", f"catalog n={page} page 2 median", "ms", False, 2.0),
        Metric("catalog_p2_p99", f"catalog n={page} page 2 p99", "ms", False, None),
        Metric("push_mono_cpu", "push: monolithic", "CPU s/GiB", False, None, group="cpu"),
        Metric("push_stream_cpu", "push: streamed PATCH", "CPU s/GiB", False, None, group="cpu"),
        Metric("push_chunked_cpu", "push: chunked PATCHes", "CPU s/GiB", False, None, group="cpu"),
        Metric("pull_cpu", "pull", "CPU s/GiB", False, None, group="cpu"),
        Metric("manifest_get_cpu", "manifest GET", "CPU us/req", False, None, group="cpu"),
        Metric("blob_head_cpu", "blob HEAD", "CPU us/req", False, None, group="cpu"),
        Metric("small_push_cpu", "small blob push", "CPU us/blob", False, None, group="cpu"),
        Metric("catalog_p1_cpu", "catalog page 1", "CPU ms/req", False, None, group="cpu"),
        Metric("catalog_p2_cpu", "catalog page 2", "CPU ms/req", False, None, group="cpu"),
    ]


# CPU seconds used so far by the server under test, when its processes are visible
CpuProbe: TypeAlias = Callable[[], float] | None

GiB = 1 << 30
BUSY_WARN = 0.15  # warn when other work keeps more than this share of the CPUs busy


def cpu_now(probe: CpuProbe) -> float:
    return probe() if probe is not None else math.nan


def put_cpu(suite: Suite, key: str, used: float, per: float) -> None:
    """Record server CPU `used` seconds divided by `per` units, when it was measured."""
    if not math.isnan(used) and per > 0:
        suite.metrics[key] = used / per


@dataclass
class Suite:
    """Figures for one registry."""

    name: str
    url: str
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def other_cpu_busy(seconds: float = 1.5) -> float:
    """Fraction of the machine's CPU time spent busy over `seconds` while this benchmark
    sits idle (from /proc/stat): what other work is running. NaN when unknown."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return math.nan
    total = total1 - total0
    return 1 - (idle1 - idle0) / total if total > 0 else math.nan


def say(msg: str) -> None:
    print(msg, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@contextlib.contextmanager
def phase(suite: Suite, name: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    except Exception as e:
        suite.errors[name] = f"{type(e).__name__}: {e}"
        say(f"    ! {name} failed: {type(e).__name__}: {str(e)[:500]}")
        if os.environ.get("BENCH_TRACEBACK"):
            traceback.print_exc()
    finally:
        suite.details.setdefault("phase_seconds", {})[name] = round(time.perf_counter() - t0, 2)


# -- phases -----------------------------------------------------------------------------------


def run_push(
    suite: Suite, reg: Registry, blobs: dict[str, BlobSource], p: Params, prefix: str, cpu: CpuProbe
) -> None:
    try:
        single_post = reg.supports_single_post(f"{prefix}/probe")
    except Exception as e:
        single_post = False
        suite.notes.append(f"single-POST probe failed ({e}); using POST + PUT")
    suite.details["single_post_upload"] = single_post
    if not single_post:
        suite.notes.append(
            "monolithic push: no single-POST upload (POST ?digest= got 202), "
            "so the client fell back to POST + PUT ?digest= with the body"
        )
    steps: list[tuple[str, Callable[[], None]]] = [
        ("mono", lambda: reg.push_monolithic(f"{prefix}/big-mono", blobs["mono"], single_post)),
        ("stream", lambda: reg.push_streamed(f"{prefix}/big-stream", blobs["stream"])),
        (
            "chunked",
            lambda: reg.push_chunked(f"{prefix}/big-chunked", blobs["chunked"], p.chunk_mib * MiB),
        ),
    ]
    for mode, push in steps:
        with phase(suite, f"push_{mode}"):
            blob = blobs[mode]
            os.sync()  # start from a clean page cache writeback state
            c0 = cpu_now(cpu)
            t0 = time.perf_counter()
            push()
            seconds = time.perf_counter() - t0
            put_cpu(suite, f"push_{mode}_cpu", cpu_now(cpu) - c0, blob.size / GiB)
            size = reg.blob_size(f"{prefix}/big-{mode}", blob.digest)
            if size != blob.size:
                raise RuntimeError(f"after push, HEAD says size {size}, expected {blob.size}")
            suite.metrics[f"push_{mode}"] = blob.size / MiB / seconds
            say(f"    push {mode:8s} {blob.size / MiB / seconds:9.1f} MiB/s  ({seconds:.2f} s)")


def run_pull(
    suite: Suite, reg: Registry, blobs: dict[str, BlobSource], p: Params, prefix: str, cpu: CpuProbe
) -> None:
    mode = next((m for m in BIG_BLOBS if f"push_{m}" in suite.metrics), None)
    if mode is None:
        raise RuntimeError("no big blob was pushed, nothing to pull")
    blob = blobs[mode]
    rates = []
    used = 0.0
    for _ in range(p.pull_repeats):
        os.sync()
        c0 = cpu_now(cpu)
        t0 = time.perf_counter()
        got = reg.pull(f"{prefix}/big-{mode}", blob.digest)
        seconds = time.perf_counter() - t0
        used += cpu_now(cpu) - c0
        if got != blob.size:
            raise RuntimeError(f"pull returned {got} bytes, expected {blob.size}")
        rates.append(blob.size / MiB / seconds)
    suite.metrics["pull"] = statistics.median(rates)
    put_cpu(suite, "pull_cpu", used, p.pull_repeats * blob.size / GiB)
    suite.details["pull_runs_mib_s"] = [round(r, 1) for r in rates]
    say(
        f"    pull          {suite.metrics['pull']:9.1f} MiB/s  (median of {len(rates)}: "
        + ", ".join(f"{r:.0f}" for r in rates)
        + ")"
    )


def push_image(reg: Registry, repo: str, image: Image, tag: str, single: bool | None) -> None:
    conn = reg.connect()
    try:
        if single is None:
            single = reg.supports_single_post(repo)
        reg.push_small_blob(conn, repo, image.config, single)
        reg.push_small_blob(conn, repo, image.layer, single)
        reg.put_manifest(conn, repo, tag, image.manifest)
    finally:
        conn.close()


def record_load(suite: Suite, key: str, res: loadgen.LoadResult, used_cpu: float) -> None:
    suite.metrics[f"{key}_rps"] = res.requests_per_s
    suite.metrics[f"{key}_p99"] = res.p99_ms
    suite.metrics[f"{key}_p50"] = res.p50_ms
    put_cpu(suite, f"{key}_cpu", used_cpu * 1e6, res.requests)
    suite.details[key] = {
        "command": res.command,
        "requests": res.requests,
        "non_2xx": res.non_2xx,
        "socket_errors": res.socket_errors,
        "output": res.output,
    }
    bad = []
    if res.non_2xx:
        bad.append(f"{res.non_2xx} non-2xx responses")
    if res.socket_errors and res.socket_errors != "connect 0, read 0, write 0, timeout 0":
        bad.append(res.socket_errors)
    if bad:
        suite.notes.append(f"{key}: " + "; ".join(bad))
    if res.requests == 0 or res.non_2xx > res.requests // 100:
        raise RuntimeError(
            f"{key}: {res.non_2xx} of {res.requests} requests failed; figures discarded"
        )
    say(
        f"    {key:16s} {res.requests_per_s:9.0f} req/s  p50 {res.p50_ms:.2f} ms  "
        f"p99 {res.p99_ms:.2f} ms"
    )


def run_manifest_get(suite: Suite, reg: Registry, p: Params, prefix: str, cpu: CpuProbe) -> None:
    url = f"{reg.base_url}/v2/{prefix}/small-image/manifests/v1"
    headers = {"Accept": OCI_MANIFEST}
    kw: dict[str, Any] = {
        "threads": p.load_threads,
        "connections": p.load_connections,
        "headers": headers,
    }
    if p.warmup_seconds:
        loadgen.run_wrk(url, seconds=p.warmup_seconds, **kw)
    c0 = cpu_now(cpu)
    res = loadgen.run_wrk(url, seconds=p.load_seconds, **kw)
    record_load(suite, "manifest_get", res, cpu_now(cpu) - c0)


def run_blob_head(
    suite: Suite, reg: Registry, p: Params, prefix: str, image: Image, cpu: CpuProbe
) -> None:
    url = f"{reg.base_url}/v2/{prefix}/small-image/blobs/{image.layer_digest}"
    if p.warmup_seconds:
        loadgen.run_ab_head(url, connections=p.load_connections, seconds=p.warmup_seconds)
    c0 = cpu_now(cpu)
    res = loadgen.run_ab_head(url, connections=p.load_connections, seconds=p.load_seconds)
    record_load(suite, "blob_head", res, cpu_now(cpu) - c0)


def run_small_push(suite: Suite, reg: Registry, p: Params, prefix: str, cpu: CpuProbe) -> None:
    single_post = suite.details.get("single_post_upload")
    if single_post is None:
        single_post = reg.supports_single_post(f"{prefix}/small-blobs")
    c0 = cpu_now(cpu)
    res = rawaio.small_blob_push(
        reg.host,
        reg.port,
        f"{prefix}/small-blobs",
        concurrency=p.small_concurrency,
        seconds=p.small_seconds,
        max_blobs=p.small_max_blobs,
        blob_size=p.small_size,
        single_post=bool(single_post),
    )
    put_cpu(suite, "small_push_cpu", (cpu_now(cpu) - c0) * 1e6, res.count)
    if res.errors:
        suite.notes.append(f"small push: {len(res.errors)} errors, first: {res.errors[0]}")
    if res.count == 0:
        raise RuntimeError("no small blob was pushed")
    rate = res.count / res.seconds
    p99 = percentile(res.latencies_s, 99) * 1e3
    client_cpu = res.client_cpu_s / res.seconds * 100
    suite.metrics["small_push_rate"] = rate
    suite.metrics["small_push_p99"] = p99
    suite.details["small_push"] = {
        "blobs": res.count,
        "seconds": round(res.seconds, 2),
        "client_cpu_percent_of_one_core": round(client_cpu),
        "requests_per_blob": 1 if single_post else 2,
    }
    say(
        f"    small push    {rate:9.0f} blobs/s  ({res.count} in {res.seconds:.1f} s, "
        f"p99 {p99:.1f} ms, {1 if single_post else 2} req/blob, "
        f"client CPU {client_cpu:.0f}% of a core)"
    )


def run_catalog(
    suite: Suite, reg: Registry, p: Params, prefix: str, image: Image, cpu: CpuProbe
) -> None:
    repos = [f"{prefix}-cat/r{i:05d}" for i in range(p.catalog_repos)]
    res = rawaio.create_repos(
        reg.host,
        reg.port,
        repos,
        source=f"{prefix}/small-image",
        blobs=[(image.config, image.config_digest), (image.layer, image.layer_digest)],
        manifest=image.manifest,
        tag="v1",
        concurrency=p.setup_concurrency,
    )
    say(
        f"    catalog setup: {res.count} repositories in {res.seconds:.1f} s "
        f"({res.count / res.seconds:.0f}/s)"
    )
    conn = reg.connect()
    try:
        first = f"/v2/_catalog?n={p.catalog_page}"
        page1, second = reg.catalog(conn, first)
        if second is None:
            raise RuntimeError(f"catalog page 1 ({len(page1)} repositories) has no next link")
        page2, _ = reg.catalog(conn, second)
        suite.details["catalog"] = {
            "page1_len": len(page1),
            "page2_len": len(page2),
            "second_page_target": second,
            "setup_seconds": round(res.seconds, 2),
        }
        t1: list[float] = []
        t2: list[float] = []
        used = {first: 0.0, second: 0.0}
        for _ in range(p.catalog_samples):
            for target, times in ((first, t1), (second, t2)):
                c0 = cpu_now(cpu)
                t0 = time.perf_counter()
                reg.catalog(conn, target)
                times.append((time.perf_counter() - t0) * 1e3)
                used[target] += cpu_now(cpu) - c0
        put_cpu(suite, "catalog_p1_cpu", used[first] * 1e3, len(t1))
        put_cpu(suite, "catalog_p2_cpu", used[second] * 1e3, len(t2))
    finally:
        conn.close()
    for n, times in (("p1", t1), ("p2", t2)):
        suite.metrics[f"catalog_{n}_median"] = statistics.median(times)
        suite.metrics[f"catalog_{n}_p99"] = percentile(times, 99)
    say(
        f"    catalog       page 1 ({len(page1)} repos) median {statistics.median(t1):.2f} ms "
        f"p99 {percentile(t1, 99):.2f} ms; page 2 ({len(page2)} repos) median "
        f"{statistics.median(t2):.2f} ms p99 {percentile(t2, 99):.2f} ms"
    )


def run_suite(
    name: str,
    url: str,
    blobs: dict[str, BlobSource],
    image: Image,
    p: Params,
    phases: list[str],
    run_id: str,
    cpu: CpuProbe,
) -> Suite:
    suite = Suite(name=name, url=url)
    reg = Registry(url)
    prefix = f"bench-{run_id}"
    busy = other_cpu_busy()
    suite.details["machine_busy_at_start"] = None if math.isnan(busy) else round(busy, 3)
    suite.details["loadavg_at_start"] = os.getloadavg()[0]
    say(f"\n== {name} at {url} (CPU busy with other work before the start: {busy:.0%})")
    if busy > BUSY_WARN:
        suite.notes.append(
            f"the machine was {busy:.0%} busy with other work just before this "
            "suite started; its figures are noisy"
        )
    with phase(suite, "connect"):
        status = reg.ping()
        if status != 200:
            raise RuntimeError(
                f"GET /v2/ answered {status} (only registries without auth can be measured)"
            )
    if "connect" in suite.errors:
        return suite
    if "push" in phases:
        run_push(suite, reg, blobs, p, prefix, cpu)
    if "pull" in phases:
        with phase(suite, "pull"):
            run_pull(suite, reg, blobs, p, prefix, cpu)
    if {"manifest", "head", "catalog"} & set(phases):
        with phase(suite, "small_image"):
            push_image(
                reg, f"{prefix}/small-image", image, "v1", suite.details.get("single_post_upload")
            )
        if "small_image" in suite.errors:
            return suite
    if "manifest" in phases:
        with phase(suite, "manifest_get"):
            run_manifest_get(suite, reg, p, prefix, cpu)
    if "head" in phases:
        with phase(suite, "blob_head"):
            run_blob_head(suite, reg, p, prefix, image, cpu)
    if "small" in phases:
        with phase(suite, "small_push"):
            run_small_push(suite, reg, p, prefix, cpu)
    if "catalog" in phases:
        with phase(suite, "catalog"):
            run_catalog(suite, reg, p, prefix, image, cpu)
    return suite


# -- report -----------------------------------------------------------------------------------


def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def compare(metrics: list[Metric], dist: Suite, other: Suite) -> list[dict[str, Any]]:
    rows = []
    for m in metrics:
        d = dist.metrics.get(m.key)
        o = other.metrics.get(m.key)
        ratio = m.ratio(d, o) if d is not None and o is not None else None
        rows.append(
            {
                "key": m.key,
                "label": m.label,
                "unit": m.unit,
                "better": "higher" if m.higher_is_better else "lower",
                "values": {"distribution": d, other.name: o},
                "ratio": ratio,
                "ratio_is": (
                    f"{other.name} / distribution"
                    if m.higher_is_better
                    else f"distribution / {other.name}"
                ),
                "target": m.target_text(),
                "met": m.met(ratio),
                "group": m.group,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], other: str, goals: bool = True) -> None:
    headers = ["measurement", "unit", "distribution", other, "ratio"]
    if goals:
        headers += ["goal", "met"]
    table = []
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        unit = r["unit"] + (" (lower=better)" if r["better"] == "lower" else "")
        row = [r["label"], unit, fmt(r["values"]["distribution"]), fmt(r["values"][other]), ratio]
        if goals:
            row += [r["target"], {True: "yes", False: "NO", None: ""}[r["met"]]]
        table.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *table, strict=False)]
    line = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    say(line.format(*headers))
    say("  ".join("-" * w for w in widths))
    for row in table:
        say(line.format(*row))


def print_reference(ref: dict[str, Any]) -> None:
    say("\nreference figures for this machine:")
    say(
        f"  disk write, dd-like copy of the {ref['size_mib']} MiB source with fsync: "
        f"{ref['disk_write_fsync_mib_s']:.0f} MiB/s"
    )
    say(
        f"  sha256 (hashlib, in memory): {ref['sha256_mib_s']:.0f} MiB/s; "
        f"digest precompute of the source file: {ref['digest_precompute_mib_s']:.0f} MiB/s"
    )
    cap = ref.get("client")
    if cap:
        say(
            f"  client alone against a discarding sink process: upload "
            f"{cap['source_mib_s']:.0f} MiB/s (Content-Length), {cap['chunked_source_mib_s']:.0f}"
            f" MiB/s (chunked); download {cap['sink_mib_s']:.0f} MiB/s"
        )


def check_client_headroom(suites: list[Suite], reference: dict[str, Any]) -> None:
    """Note when a transfer figure comes within 3x of what the client alone can do."""
    cap = reference.get("client")
    if not cap:
        return
    limits = {
        "push_mono": cap["source_mib_s"],
        "push_stream": cap["chunked_source_mib_s"],
        "push_chunked": cap["source_mib_s"],
        "pull": cap["sink_mib_s"],
    }
    for s in suites:
        for key, limit in limits.items():
            got = s.metrics.get(key)
            if got is not None and got * 3 > limit:
                s.notes.append(
                    f"{key} {got:.0f} MiB/s is within 3x of the client's own "
                    f"ceiling ({limit:.0f} MiB/s): the client may be limiting it"
                )


# -- main -------------------------------------------------------------------------------------


def default_moorage_bin() -> str:
    beside = Path(sys.executable).parent / "moorage"
    return str(beside if beside.exists() else REPO_ROOT / ".venv" / "bin" / "moorage")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--target-url", help="measure an already running registry (http://...)")
    who.add_argument(
        "--start-moorage",
        action="store_true",
        help="start `moorage serve` on a free loopback port with a temp data dir",
    )
    ap.add_argument(
        "--target-pid",
        type=int,
        help="with --target-url: a pid of the target, to count the CPU time of its process group",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="passed to `moorage serve --workers` (default: moorage's own default)",
    )
    ap.add_argument("--moorage-bin", default=default_moorage_bin())
    ap.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    ap.add_argument(
        "--size-mib",
        type=int,
        default=None,
        help="big blob size in MiB (default 1024; 32 with --quick)",
    )
    ap.add_argument("--quick", action="store_true", help="small sizes and short runs (smoke)")
    ap.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    ap.add_argument("--json", dest="json_out", type=Path, help="write all figures as JSON")
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the temporary files and registry roots go",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.phases = phases
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = Params.quick() if args.quick else Params()
    if args.size_mib is not None:
        p.size_mib = args.size_mib
    command = shlex.join([sys.executable, *sys.argv])
    started = dt.datetime.now(dt.UTC)
    say(f"command: {command}")
    say(
        f"started: {started.isoformat(timespec='seconds')}  host: {platform.node()}  "
        f"cpus: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  "
        f"CPU busy with other work: {other_cpu_busy():.0%}"
    )
    say(f"distribution: {servers.distribution_version(args.distribution_bin)}")
    for tool in ("wrk", "ab"):
        if shutil.which(tool) is None:
            say(f"warning: {tool} not found; its measurements will fail")

    if args.target_url:
        try:
            Registry(args.target_url).ping()
        except (OSError, ValueError) as e:
            say(f"cannot reach --target-url {args.target_url}: {e}")
            return 2

    work = Path(tempfile.mkdtemp(prefix="moorage-bench-", dir=args.work_dir))
    run_id = os.urandom(3).hex()
    suites: list[Suite] = []
    reference: dict[str, Any] = {"size_mib": p.size_mib}
    t_start = time.perf_counter()
    try:
        size = p.size_mib * MiB
        source = work / "source.bin"
        say(f"\npreparing a {p.size_mib} MiB random source file in {work} ...")
        refspeed.write_random_file(source, size)
        blobs, hash_s = refspeed.make_blobs(source, size, list(BIG_BLOBS))
        reference["digest_precompute_mib_s"] = (size - refspeed.SUFFIX_LEN) / MiB / hash_s
        reference["disk_write_fsync_mib_s"] = refspeed.disk_write_mib_s(
            source, work / "dd-copy.bin"
        )
        reference["sha256_mib_s"] = refspeed.sha256_mib_s(min(size, 512 * MiB))
        try:
            reference["client"] = asdict(refspeed.client_capacity(blobs["mono"]))
        except Exception as e:
            say(f"client capacity check failed: {type(e).__name__}: {e}")
        print_reference(reference)
        image = make_image(os.urandom(64 * 1024))

        dist = servers.distribution_server(args.distribution_bin, work)
        with dist:
            suites.append(
                run_suite(
                    "distribution", dist.url, blobs, image, p, args.phases, run_id, dist.cpu_probe()
                )
            )
        if args.start_moorage:
            moorage = servers.moorage_server(args.moorage_bin, work, args.workers)
            say(f"\nstarting: {shlex.join(moorage.argv)}")
            try:
                moorage.start()
            except RuntimeError as e:
                say(f"cannot start moorage: {e}")
                suites.append(Suite("moorage", moorage.url, errors={"start": str(e)}))
            else:
                try:
                    suites.append(
                        run_suite(
                            "moorage",
                            moorage.url,
                            blobs,
                            image,
                            p,
                            args.phases,
                            run_id,
                            moorage.cpu_probe(),
                        )
                    )
                finally:
                    moorage.stop()
        else:
            probe = servers.cpu_probe_for_pid(args.target_pid) if args.target_pid else None
            suites.append(
                run_suite("target", args.target_url, blobs, image, p, args.phases, run_id, probe)
            )
    finally:
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    dist_suite, other = suites[0], suites[1]
    check_client_headroom(suites, reference)
    rows = compare(
        [m for m in metrics_for(p) if metric_phase(m.key) in args.phases], dist_suite, other
    )
    elapsed = time.perf_counter() - t_start
    say(f"\n== results ({other.name} vs distribution 2.8), command: {command}")
    print_reference(reference)
    say("")
    print_table([r for r in rows if r["group"] == "main"], other.name)
    say(
        f"\nratio: > 1 always means {other.name} is better. Throughput and rates: "
        f"{other.name} / distribution. Latencies (ms): distribution / {other.name}, i.e. how "
        f"many times faster {other.name} answers; so the goal 'catalog latency <= 1/2' is "
        "ratio >= 2x and 'lower p99' is ratio > 1x."
    )
    cpu_rows = [r for r in rows if r["group"] == "cpu" and r["ratio"] is not None]
    if cpu_rows:
        say(
            f"\nserver CPU cost (all processes of the server; ratio = distribution / "
            f"{other.name}, > 1 means {other.name} spends less CPU):"
        )
        print_table(cpu_rows, other.name, goals=False)
    for s in suites:
        for note in s.notes:
            say(f"note ({s.name}): {note}")
        for name, err in s.errors.items():
            say(f"ERROR ({s.name}, {name}): {err[:300]}")
    say(f"\ntotal time {elapsed:.0f} s")

    if args.json_out:
        out = {
            "command": command,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(elapsed, 1),
            "machine": {
                "host": platform.node(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "distribution": servers.distribution_version(args.distribution_bin),
            },
            "params": asdict(p),
            "phases": args.phases,
            "reference": reference,
            "registries": {s.name: asdict(s) for s in suites},
            "comparison": rows,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=2) + "\n")
        say(f"wrote {args.json_out}")
    failed = any(s.errors for s in suites)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
