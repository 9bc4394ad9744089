"""Kernel counters around one measured operation, to tell a slow round from a fast one by
something other than luck: memory reclaim and compaction, dirty-page throttling, CPU steal,
pressure stall time, disk traffic, and the CPU of each thread of the server.

    with Counters(server_pids) as c:
        push()
    c.result  # {"vmstat": {...deltas}, "stat": {...}, "psi": {...}, "peak": {...}, ...}

Everything here is read from /proc and /sys (Linux); a file that is missing is left out.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

# /proc/vmstat counters whose change over the operation is reported.
VMSTAT_DELTAS = (
    "pgscan_direct", "pgsteal_direct", "pgscan_kswapd", "pgsteal_kswapd",
    "allocstall_normal", "allocstall_movable", "compact_stall", "compact_fail",
    "compact_success", "thp_fault_alloc", "thp_fault_fallback", "thp_collapse_alloc",
    "pgmajfault", "workingset_refault_file", "nr_dirtied", "nr_written",
    "pgactivate", "pgdeactivate", "pgfree", "pgalloc_normal", "pgalloc_movable",
    "pgmigrate_success", "drop_pagecache",
)  # fmt: skip
# /proc/vmstat gauges sampled during the operation (their peak, and their low for free pages).
VMSTAT_GAUGES = ("nr_dirty", "nr_writeback", "nr_free_pages", "nr_file_pages")
STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
SAMPLE_EVERY = 0.05
REPORTED_KIB = "/sys/module/page_reporting/parameters/reported_kib"


def _vmstat() -> dict[str, int]:
    out = {}
    for line in Path("/proc/vmstat").read_text().splitlines():
        name, value = line.split()
        out[name] = int(value)
    return out


def _cpu_ticks() -> dict[str, int]:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return dict(zip(STAT_FIELDS, map(int, fields), strict=False))


def _psi() -> dict[str, int]:
    """Microseconds stalled so far: cpu some, io some/full, memory some/full."""
    out = {}
    for resource in ("cpu", "io", "memory"):
        try:
            text = Path(f"/proc/pressure/{resource}").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            kind, *pairs = line.split()
            total = dict(p.split("=") for p in pairs)["total"]
            out[f"{resource}_{kind}"] = int(total)
    return out


def _reported_kib() -> dict[str, int]:
    """KiB of free memory the guest has handed back to the host so far (virtio-balloon free
    page reporting, as on Firecracker): the host unmaps it, and the next write into it faults
    in the host (bench/page_touch.py)."""
    try:
        return {"reported_kib": int(Path(REPORTED_KIB).read_text())}
    except (OSError, ValueError):
        return {}


def _disk(device: str) -> dict[str, int]:
    """/sys/block/<device>/stat: sectors written and milliseconds spent writing, flushes."""
    try:
        f = Path(f"/sys/block/{device}/stat").read_text().split()
    except OSError:
        return {}
    out = {"sectors_written": int(f[6]), "write_ms": int(f[7]), "in_flight_ms": int(f[9])}
    if len(f) >= 17:
        out |= {"flushes": int(f[15]), "flush_ms": int(f[16])}
    return out


def _threads(pids: list[int]) -> dict[str, tuple[int, int, int, int]]:
    """(utime, stime, voluntary, involuntary switches) per thread, keyed "pid/tid comm"."""
    out = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            switches = {
                k: int(v)
                for k, v in (line.split(":") for line in status.splitlines() if "ctxt" in line)
            }
            out[f"{pid}/{tid} {comm}"] = (
                int(fields[11]),
                int(fields[12]),
                switches.get("voluntary_ctxt_switches", 0),
                switches.get("nonvoluntary_ctxt_switches", 0),
            )
    return out


def _root_device() -> str:
    """The block device under the data directories (the root filesystem's, e.g. vda)."""
    try:
        major, minor = divmod(os.stat("/tmp").st_dev, 256)
        return Path(f"/sys/dev/block/{major}:{minor}").resolve().name
    except OSError:
        return "vda"


class Counters:
    """Deltas of the kernel counters, peaks of the gauges (sampled every 50 ms by a thread),
    and per-thread CPU of ``pids`` over a ``with`` block."""

    def __init__(self, pids: Callable[[], list[int]] | None = None) -> None:
        self._pids = pids or (lambda: [])
        self._device = _root_device()
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self.peak: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.result: dict[str, Any] = {}

    def __enter__(self) -> Counters:
        self._before = (_vmstat(), _cpu_ticks(), _psi(), _disk(self._device) | _reported_kib())
        self._threads_before = _threads(self._pids())
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            now = _vmstat()
            for gauge in VMSTAT_GAUGES:
                value = now.get(gauge, 0)
                self.peak[gauge] = max(self.peak.get(gauge, value), value)
                self.low[gauge] = min(self.low.get(gauge, value), value)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        after = (_vmstat(), _cpu_ticks(), _psi(), _disk(self._device) | _reported_kib())
        threads_after = _threads(self._pids())
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join()
        vm0, cpu0, psi0, disk0 = self._before
        vm1, cpu1, psi1, disk1 = after
        per_thread = {}
        for name, (u1, s1, v1, n1) in threads_after.items():
            u0, s0, v0, n0 = self._threads_before.get(name, (0, 0, 0, 0))
            if u1 - u0 or s1 - s0:
                per_thread[name] = {"utime": u1 - u0, "stime": s1 - s0,
                                    "voluntary": v1 - v0, "involuntary": n1 - n0}  # fmt: skip
        self.result = {
            "vmstat": {k: vm1.get(k, 0) - vm0.get(k, 0) for k in VMSTAT_DELTAS if k in vm1},
            "stat_ticks": {k: cpu1[k] - cpu0[k] for k in cpu1},
            "psi_us": {k: psi1[k] - psi0[k] for k in psi1},
            "disk": {k: disk1[k] - disk0.get(k, 0) for k in disk1},  # and reported_kib
            "peak_pages": dict(self.peak),
            "low_pages": dict(self.low),
            "threads_ticks": per_thread,
        }


def summary(result: dict[str, Any]) -> str:
    """One line of the counters that told slow rounds from fast ones (or might have)."""
    vm, st, psi = result["vmstat"], result["stat_ticks"], result["psi_us"]
    page_mib = os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    allocstall = vm.get("allocstall_normal", 0) + vm.get("allocstall_movable", 0)
    threads = sorted(result["threads_ticks"].items(), key=lambda kv: -sum(kv[1].values()))
    top = ", ".join(f"{name.split('/', 1)[1]} {t['utime']}+{t['stime']}" for name, t in threads[:4])
    return (
        f"steal {st.get('steal', 0)} iowait {st.get('iowait', 0)} ticks; "
        f"scan_direct {vm.get('pgscan_direct', 0)} allocstall {allocstall} "
        f"compact_stall {vm.get('compact_stall', 0)} thp {vm.get('thp_fault_alloc', 0)}; "
        f"psi cpu {psi.get('cpu_some', 0) // 1000} io {psi.get('io_some', 0) // 1000} "
        f"mem {psi.get('memory_some', 0) // 1000} ms; "
        f"dirty peak {result['peak_pages'].get('nr_dirty', 0) * page_mib:.0f} MiB, "
        f"free low {result['low_pages'].get('nr_free_pages', 0) * page_mib:.0f} MiB; "
        f"reported to the host {result['disk'].get('reported_kib', 0) // 1024} MiB; "
        f"threads u+s ticks: {top}"
    )
