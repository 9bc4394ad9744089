"""Lease holders: a process that is gone (or whose pid now belongs to another process) is known
dead at once; anything that cannot be checked from here is presumed alive."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from moorage.services.lease_holders import LeaseHolder, LeaseHolders


def test_this_process_is_alive_and_a_killed_one_is_dead() -> None:
    holders = LeaseHolders()
    me = LeaseHolder.parse(holders.current())
    assert me is not None and me.scope and me.started
    assert not holders.is_dead(str(me))

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    name = str(LeaseHolder(me.scope, child.pid, started, "node"))
    assert not holders.is_dead(name)
    child.kill()
    child.wait()
    assert holders.is_dead(name)


def _fake_proc(root: Path, boot_id: str, pids: dict[int, str], state: str = "S") -> Path:
    (root / "sys/kernel/random").mkdir(parents=True)
    (root / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (root / "self/ns").mkdir(parents=True)
    (root / "self/ns/pid").symlink_to("pid:[4026531836]")
    for pid, started in pids.items():
        (root / str(pid)).mkdir()
        fields = [state] + ["0"] * 18 + [started] + ["0"] * 10
        (root / str(pid) / "stat").write_text(f"{pid} (a (tricky) name) {' '.join(fields)}\n")
    return root


def test_a_reused_pid_does_not_keep_a_dead_holder_alive(tmp_path: Path) -> None:
    holders = LeaseHolders(_fake_proc(tmp_path, "boot-1", {42: "5000"}))
    scope = "boot-1:pid:[4026531836]"
    assert not holders.is_dead(f"{scope}/42/5000/node")  # the same process
    assert holders.is_dead(f"{scope}/42/4000/node")  # pid 42 is another process now
    assert holders.is_dead(f"{scope}/43/4000/node")  # no such process


def test_a_zombie_holder_is_dead(tmp_path: Path) -> None:
    # A SIGKILLed worker whose parent was killed too, not yet reaped by init.
    holders = LeaseHolders(_fake_proc(tmp_path, "boot-1", {42: "5000"}, state="Z"))
    assert holders.is_dead("boot-1:pid:[4026531836]/42/5000/node")


def test_holders_that_cannot_be_checked_from_here_are_presumed_alive(tmp_path: Path) -> None:
    holders = LeaseHolders(_fake_proc(tmp_path, "boot-1", {}))
    assert not holders.is_dead("boot-2:pid:[4026531836]/43/4000/node")  # another kernel
    assert not holders.is_dead("boot-1:pid:[4026532000]/43/4000/node")  # another pid namespace
    assert not holders.is_dead(None)  # a lease taken before holders were recorded
    assert not holders.is_dead("garbage")
    assert not LeaseHolders(tmp_path / "no-proc").is_dead("/43/4000/node")
