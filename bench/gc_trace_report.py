"""What the slow requests of a traced ``gc_load.py --trace DIR`` run coincide with.

For each round: the open-loop requests during the collection slower than that round's p99
alone (mean of the before and after windows, as gc_load.py's ratio), and, for each kind of
collector activity, the share of those slow requests whose time in flight overlapped it,
against the share of *all* requests of the window that did (what chance gives). A kind the
slow requests meet much more often than chance (lift well above 1) is a cause; one they meet
as often as any request is not. Also the collector's own figures: writer-lock waits and holds,
checkpoints, queue reads, unlinks, and its CPU outside those, per second of the window.

    python bench/gc_trace_report.py DIR [DIR ...] [--loop closed]

``--loop closed``: the same for the closed loop's pushes-only windows (one client pushing as
fast as it is answered), each push counted from when it was sent.

Several directories (runs of the same variants) are reported as one: their rounds per variant
together. Each peri-event row ends with the *bump*: the share of slow requests due in the 5 ms
after the moment over that due in the 15 ms before it (-20 to -5 ms), a ratio that does not
depend on the round's threshold (its p99 alone), so variants can be set side by side.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
from collections.abc import Iterable
from pathlib import Path

Interval = tuple[float, float]


def _load(path: Path) -> list[dict[str, float | str]]:
    with path.open() as lines:
        return [json.loads(line) for line in lines]


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _pairs(events: list[dict[str, float | str]], begin: str, end: str) -> list[Interval]:
    out, opened = [], None
    for e in events:
        if e["ev"] == begin:
            opened = float(e["t"])
        elif e["ev"] == end and opened is not None:
            out.append((opened, float(e["t"])))
            opened = None
    return out


def activities(events: list[dict[str, float | str]]) -> dict[str, list[Interval]]:
    """The collector's intervals by kind. ``awake``: not in a pacing sleep (on a CPU or
    waiting for one, or for the disk); ``cpu outside``: awake and in none of the others."""
    kinds = {
        "lock wait": _pairs(events, "lock_req", "lock_got"),
        "lock hold": _pairs(events, "lock_got", "lock_rel"),
        "checkpoint": _pairs(events, "ckpt", "ckpt_end"),
        "queue read": _pairs(events, "due", "due_end"),
        "unlink": _pairs(events, "unlink", "unlink_end"),
    }
    sleeps = _pairs(events, "sleep", "sleep_end")
    first = float(events[0]["t"])
    last = float(events[-1]["t"])
    awake, at = [], first
    for start, end in sleeps:
        awake.append((at, start))
        at = end
    awake.append((at, last))
    kinds["awake"] = awake
    # Checkpoint just ended: the kernel's writeback of what it wrote (10 ms after).
    kinds["10 ms after a checkpoint"] = [(e, e + 0.010) for _, e in kinds["checkpoint"]]
    busy = sorted(
        kinds["lock wait"] + kinds["lock hold"] + kinds["checkpoint"] + kinds["queue read"]
    )
    kinds["awake, outside lock/checkpoint/read"] = list(_subtract(awake, busy))
    return kinds


def _subtract(base: list[Interval], cut: list[Interval]) -> Iterable[Interval]:
    for start, end in base:
        at = start
        for c0, c1 in cut:
            if c1 <= at or c0 >= end:
                continue
            if c0 > at:
                yield (at, c0)
            at = max(at, c1)
        if at < end:
            yield (at, end)


def _overlaps(intervals: list[Interval], start: float, end: float) -> bool:
    # Few thousand intervals, few thousand requests: a bisect would do, a scan is enough.
    return any(s < end and e > start for s, e in intervals)


def _covered(intervals: list[Interval], start: float, end: float) -> float:
    return sum(max(0.0, min(e, end) - max(s, start)) for s, e in intervals)


# The streams of each loop's logs (gc_load.py --trace): the open loop's GETs and pushes, and
# the closed loop's pushes-only windows (each push due when the last was answered).
STREAMS = {"open": ("GETs", "pushes"), "closed": ("pushes",)}

# Offsets (ms) of a request's due time from an anchor, in bins: before the anchor is the
# baseline the bins after it are compared with.
BINS = [(-20, -10), (-10, -5), (-5, 0), (0, 5), (5, 10), (10, 20), (20, 40)]


def anchors(events: list[dict[str, float | str]]) -> dict[str, list[float]]:
    """Moments the collector's schedule sets, not the machine's load: when each pacing
    sleep was due to end (its timer; the thread may run later), split by whether the
    transaction it starts is followed by a checkpoint (every CHECKPOINT_EVERY-th), and
    each checkpoint's start."""
    wakes = [float(e["t"]) + float(e["v"]) for e in events if e["ev"] == "sleep"]
    checkpoints = [float(e["t"]) for e in events if e["ev"] == "ckpt"]

    def then_checkpoint(wake: float) -> bool:
        i = bisect.bisect_left(checkpoints, wake)
        return i < len(checkpoints) and checkpoints[i] - wake < 0.015

    return {
        "wake, no checkpoint": [w for w in wakes if not then_checkpoint(w)],
        "wake, then checkpoint": [w for w in wakes if then_checkpoint(w)],
        "checkpoint start": checkpoints,
    }


def _sched(event: dict[str, float | str]) -> tuple[int, int]:
    fields = str(event.get("sched", "")).split()
    return (int(fields[0]), int(fields[1])) if len(fields) >= 2 else (0, 0)


def holds_waiting(events: list[dict[str, float | str]]) -> list[float]:
    """Per writer-lock hold, the ms the collector spent runnable but off a CPU inside it
    (preempted while holding the lock: every push then waits for it)."""
    out, got = [], None
    for e in events:
        if e["ev"] == "lock_got":
            got = e
        elif e["ev"] == "lock_rel" and got is not None:
            out.append((_sched(e)[1] - _sched(got)[1]) / 1e6)
            got = None
    return out


def peri_event(
    requests: list[dict[str, float | str]], threshold: float, moments: list[float]
) -> list[tuple[int, int]]:
    """Per bin of BINS: (requests, of which slower than ``threshold``)."""
    moments = sorted(moments)
    counts = [[0, 0] for _ in BINS]
    for r in requests:
        due = float(r["t"])
        # Anchors m with due - m in [BINS[0][0], BINS[-1][1]) ms.
        i = bisect.bisect_right(moments, due - BINS[-1][1] / 1000)
        while i < len(moments) and moments[i] <= due - BINS[0][0] / 1000:
            offset = (due - moments[i]) * 1000
            for b, (low, high) in enumerate(BINS):
                if low <= offset < high:
                    counts[b][0] += 1
                    counts[b][1] += float(r["lat"]) > threshold
            i += 1
    return [(n, slow) for n, slow in counts]


def one_round(directory: Path, name: str, loop: str = "open") -> dict[str, dict[str, float]] | None:
    gc_path = directory / f"{name}.gc.jsonl"
    windows = {w: directory / f"{name}.{loop}-{w}.jsonl" for w in ("before", "gc", "after")}
    if not gc_path.exists() or not all(p.exists() for p in windows.values()):
        return None
    events = _load(gc_path)
    requests = {w: _load(p) for w, p in windows.items()}
    kinds = activities(events)
    during = requests["gc"]
    start = min(float(r["t"]) for r in during)
    end = max(float(r["t"]) + float(r["lat"]) for r in during)
    print(f"{name}: window {end - start:.1f} s, {len(during)} requests")
    imported = next(float(e["t"]) for e in events if e["ev"] == "imported")
    started = float(events[0]["t"])
    print(
        f"  collector: start-up {imported - started:.2f} s wall before the window's "
        f"{start - imported:.1f} s; ",
        end="",
    )
    cpu = [e for e in events if start <= float(e["t"]) <= end]
    if cpu:
        print(f"CPU in the window {float(cpu[-1]['cpu']) - float(cpu[0]['cpu']):.3f} s")
    for kind in ("lock wait", "lock hold", "checkpoint", "queue read", "unlink"):
        lengths = [(e - s) * 1000 for s, e in kinds[kind] if start <= s <= end]
        if lengths:
            print(
                f"  {kind:<12} {len(lengths):5d} in the window, ms p50 {_p(lengths, 0.5):.2f} "
                f"p99 {_p(lengths, 0.99):.2f} max {max(lengths):.2f}, "
                f"{sum(lengths) / 1000 / (end - start):.1%} of the time"
            )
    waits = holds_waiting(events)
    if waits:
        print(
            f"  off a CPU inside its holds: p50 {_p(waits, 0.5):.2f} ms, p99 {_p(waits, 0.99):.2f}"
            f" ms; {sum(w > 1 for w in waits)} of {len(waits)} holds (whole run) over 1 ms"
        )
    result: dict[str, dict[str, float]] = {}
    for stream in STREAMS[loop]:
        alone = [
            _p([float(r["lat"]) for r in requests[w] if r["s"] == stream], 0.99)
            for w in ("before", "after")
        ]
        threshold = sum(alone) / 2
        mine = [r for r in during if r["s"] == stream]
        slow = [r for r in mine if float(r["lat"]) > threshold]
        p99 = _p([float(r["lat"]) for r in mine], 0.99)
        print(
            f"  {stream}: p99 alone {threshold * 1000:.1f} ms, during {p99 * 1000:.1f} ms "
            f"({p99 / threshold:.2f}x); {len(slow)} of {len(mine)} above the alone p99 "
            f"({len(slow) / max(1, len(mine)):.1%})"
        )
        row: dict[str, float] = {"slow": len(slow), "all": len(mine)}
        for anchor, moments in anchors(events).items():
            for b, (n, n_slow) in enumerate(peri_event(mine, threshold, moments)):
                row[f"@{anchor}:{b}:n"] = n
                row[f"@{anchor}:{b}:slow"] = n_slow
        for kind, intervals in kinds.items():
            if kind.startswith("@"):
                continue

            def hit(r: dict[str, float | str], intervals: list[Interval] = intervals) -> bool:
                t = float(r["t"])
                return _overlaps(intervals, t, t + float(r["lat"]))

            among_slow = sum(map(hit, slow)) / max(1, len(slow))
            among_all = sum(map(hit, mine)) / max(1, len(mine))
            row[kind] = among_slow
            row[kind + " (all)"] = among_all
            print(
                f"    {kind:<38} slow {among_slow:6.1%}  all {among_all:6.1%}  "
                f"lift {among_slow / among_all if among_all else float('nan'):.2f}"
            )
        result[stream] = row
    return result


def _bump(shares: dict[tuple[int, int], tuple[float, float]]) -> str:
    """Slow share due 0-5 ms after the moment over that due 5-20 ms before it."""
    before = [shares[b] for b in ((-20, -10), (-10, -5))]
    slow_before, n_before = sum(s for s, _ in before), sum(n for _, n in before)
    slow_after, n_after = shares[0, 5]
    if not (n_before and n_after and slow_before):
        return "n/a"
    return f"{(slow_after / n_after) / (slow_before / n_before):.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, nargs="+")
    parser.add_argument(
        "--loop",
        choices=sorted(STREAMS),
        default="open",
        help="the open loop's windows, or the closed loop's pushes-only windows",
    )
    args = parser.parse_args()
    by_variant: dict[str, list[dict[str, dict[str, float]]]] = {}
    for directory in args.directory:
        names = sorted(
            {p.name.split(".")[0] for p in directory.glob("round-*.gc.jsonl")},
            key=lambda n: int(n.split("-")[1]),
        )
        if len(args.directory) > 1:
            print(f"== {directory}")
        for name in names:
            result = one_round(directory, name, args.loop)
            label_file = directory / f"{name}.variant"
            label = label_file.read_text() if label_file.exists() else "?"
            if result:
                by_variant.setdefault(label, []).append(result)
    for label, rounds in by_variant.items():
        print(f"\n{label} ({len(rounds)} rounds): medians, slow / all requests overlapping each")
        for stream in STREAMS[args.loop]:
            for kind in rounds[0][stream]:
                if kind in ("slow", "all") or kind.endswith("(all)") or kind.startswith("@"):
                    continue
                slow = statistics.median(r[stream][kind] for r in rounds)
                every = statistics.median(r[stream][kind + " (all)"] for r in rounds)
                print(f"  {stream:<7} {kind:<38} slow {slow:6.1%}  all {every:6.1%}")
        print(f"{label}: share of requests above the alone p99, by due time from an anchor (ms)")
        for stream in STREAMS[args.loop]:
            for anchor in anchors([]):
                cells = []
                shares: dict[tuple[int, int], tuple[float, float]] = {}
                for b, (low, high) in enumerate(BINS):
                    n = sum(r[stream].get(f"@{anchor}:{b}:n", 0) for r in rounds)
                    slow = sum(r[stream].get(f"@{anchor}:{b}:slow", 0) for r in rounds)
                    shares[low, high] = slow, n
                    cells.append(
                        f"[{low},{high}) {slow / n if n else float('nan'):5.1%} of {n:.0f}"
                    )
                print(f"  {stream:<7} {anchor}: " + "  ".join(cells) + f"  bump {_bump(shares)}")


if __name__ == "__main__":
    main()
