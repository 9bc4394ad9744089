"""Liveness of lease holders on another host (services/liveness.py): beats in the database,
judged by the database's clock, on SQLite and PostgreSQL. A stale beat or a clean shutdown
makes a holder presumed dead; after a database outage every holder gets one timeout of grace;
on this host the kernel is asked first."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from moorage.metadata.job_leases import SqlJobLeases
from moorage.metadata.presence_sql import SqlPresence
from moorage.metadata.records import Beat, Sighting
from moorage.metadata.sql import SqlMetadataStore
from moorage.services.jobs import HeldLease
from moorage.services.lease_holders import LeaseHolder, LeaseHolders
from moorage.services.liveness import Heartbeat, Liveness, presumed_dead

TIMEOUT = 0.8  # seconds; the beats below come every 0.1 s
ELSEWHERE = "other-boot:pid:[1]/7/123/node-b"  # a process on another host
JUDGE = "other-boot:pid:[2]/8/456/node-c"


# --- the rule -----------------------------------------------------------------------------


STEADY = Beat(99.9, 90.0, False)  # a judge that has beaten steadily for 10 s


def sighting(holder: Beat | None, judge: Beat | None = STEADY) -> Sighting:
    return Sighting(100.0, holder, judge)


def test_a_stale_beat_is_presumed_dead_and_a_recent_one_alive() -> None:
    assert presumed_dead(sighting(Beat(94.0, 0.0, False)), 5.0)
    assert not presumed_dead(sighting(Beat(96.0, 0.0, False)), 5.0)


def test_a_clean_shutdown_is_dead_at_once_and_no_row_is_never_judged() -> None:
    assert presumed_dead(sighting(Beat(99.9, 0.0, True), judge=None), 5.0)
    # No row: a process of a release that does not beat; its lease runs to its deadline.
    assert not presumed_dead(sighting(None), 5.0)


def test_after_an_outage_the_judge_waits_one_timeout_from_its_own_first_beat() -> None:
    holder = Beat(80.0, 0.0, False)  # nobody could beat for 20 s
    assert not presumed_dead(sighting(holder, judge=Beat(99.9, 97.0, False)), 5.0)
    assert presumed_dead(sighting(holder, judge=Beat(99.9, 95.0, False)), 5.0)
    # A judge whose own beats are late may be the one cut off: it judges nobody.
    assert not presumed_dead(sighting(holder, judge=Beat(97.0, 0.0, False)), 5.0)
    assert not presumed_dead(sighting(holder, judge=None), 5.0)


# --- in the database --------------------------------------------------------------------------


def beat_for(presence: SqlPresence, seconds: float, *processes: str) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for process in processes:
            presence.beat(process, TIMEOUT / 2)
        time.sleep(0.1)


def judged(presence: SqlPresence, holder: str) -> bool:
    return presumed_dead(presence.sighting(holder, JUDGE), TIMEOUT)


def test_a_holder_that_stops_beating_is_presumed_dead_after_the_timeout(
    store: SqlMetadataStore,
) -> None:
    presence = SqlPresence(store)
    beat_for(presence, TIMEOUT + 0.2, JUDGE, ELSEWHERE)
    assert not judged(presence, ELSEWHERE)
    beat_for(presence, TIMEOUT / 2, JUDGE)
    assert not judged(presence, ELSEWHERE)
    beat_for(presence, TIMEOUT / 2 + 0.2, JUDGE)
    assert judged(presence, ELSEWHERE)
    # It beats again (it was only slow): alive again, by the same rule.
    presence.beat(ELSEWHERE, TIMEOUT / 2)
    assert not judged(presence, ELSEWHERE)


def test_a_clean_shutdown_is_taken_over_at_once(store: SqlMetadataStore) -> None:
    presence = SqlPresence(store)
    presence.beat(JUDGE, TIMEOUT / 2)
    presence.beat(ELSEWHERE, TIMEOUT / 2)
    presence.stop(ELSEWHERE)
    assert judged(presence, ELSEWHERE)
    assert not judged(presence, "nobody/1/1/never-beat")


def test_after_a_database_outage_live_holders_get_one_timeout_to_beat_again(
    store: SqlMetadataStore,
) -> None:
    presence = SqlPresence(store)
    beat_for(presence, TIMEOUT + 0.2, JUDGE, ELSEWHERE)
    time.sleep(TIMEOUT + 0.3)  # the outage: nobody beats
    presence.beat(JUDGE, TIMEOUT / 2)  # back: the judge's unbroken run starts again
    assert not judged(presence, ELSEWHERE)  # every row is stale, nobody is judged yet
    beat_for(presence, TIMEOUT / 2, JUDGE, ELSEWHERE)  # the live holder beats again
    beat_for(presence, TIMEOUT / 2 + 0.2, JUDGE, ELSEWHERE)
    assert not judged(presence, ELSEWHERE)
    beat_for(presence, TIMEOUT + 0.2, JUDGE)  # then it dies
    assert judged(presence, ELSEWHERE)


def test_rows_of_long_gone_processes_are_forgotten(store: SqlMetadataStore) -> None:
    presence = SqlPresence(store)
    presence.beat(ELSEWHERE, TIMEOUT / 2)
    time.sleep(0.3)
    presence.beat(JUDGE, TIMEOUT / 2)
    presence.forget(0.2)
    seen = presence.sighting(ELSEWHERE, JUDGE)
    assert seen.holder is None and seen.judge is not None


def test_the_kernel_is_asked_first_on_this_host(store: SqlMetadataStore) -> None:
    presence = SqlPresence(store)
    liveness = Liveness(LeaseHolders())
    liveness.use(presence, TIMEOUT)
    me = liveness.current()
    # Rows say stopped, but the kernel says the process runs: alive.
    presence.beat(me, TIMEOUT / 2)
    presence.stop(me)
    assert not liveness.is_dead(me)
    # A process of this host that was killed: dead, though its row beat a moment ago.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    holder = LeaseHolder.parse(me)
    assert holder is not None
    started = (Path("/proc") / str(child.pid) / "stat").read_text()
    start_time = started[started.rfind(")") + 2 :].split()[19]
    name = str(LeaseHolder(holder.scope, child.pid, start_time, holder.host))
    presence.beat(name, TIMEOUT / 2)
    assert not liveness.is_dead(name)
    child.kill()
    child.wait()
    assert liveness.is_dead(name)


def test_the_heartbeat_thread_beats_and_marks_the_row_stopped(store: SqlMetadataStore) -> None:
    presence = SqlPresence(store)
    liveness = Liveness(LeaseHolders())
    liveness.use(presence, TIMEOUT)
    heartbeat = Heartbeat(presence, liveness, every=0.1)
    heartbeat.start()
    try:
        first = presence.sighting(liveness.current(), JUDGE).holder
        time.sleep(0.35)
        later = presence.sighting(liveness.current(), JUDGE).holder
        assert first is not None and later is not None and later.last > first.last
        assert later.since == first.since and not later.stopped
    finally:
        heartbeat.stop()
    row = presence.sighting(liveness.current(), JUDGE).holder
    assert row is not None and row.stopped


@pytest.mark.parametrize("stopped", [True, False])
def test_a_job_held_by_a_dead_node_moves_at_once(store: SqlMetadataStore, stopped: bool) -> None:
    """The GC and event-delivery leases use the same liveness."""
    presence = SqlPresence(store)
    liveness = Liveness(LeaseHolders())
    liveness.use(presence, TIMEOUT)
    leases = SqlJobLeases(store)
    now = time.time()
    assert leases.acquire("gc", f"{ELSEWHERE}#1234", now, now + 60)
    ours = HeldLease(leases, "gc", f"{liveness.current()}#5678", 60, liveness=liveness)
    beat_for(presence, TIMEOUT + 0.2, liveness.current(), ELSEWHERE)
    assert not ours.take()  # its node beats: the lease is its own until it runs out
    if stopped:
        presence.stop(ELSEWHERE)  # a clean shutdown that did not release (killed after it)
    else:
        beat_for(presence, TIMEOUT + 0.2, liveness.current())  # the node died
    assert ours.take()
    held = leases.holder("gc")
    assert held is not None and held[0] == ours.holder
