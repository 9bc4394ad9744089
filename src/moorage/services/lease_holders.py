"""Who holds a lease, and whether that process is known to be dead.

A lease's deadline alone cannot tell a slow holder from a dead one, so a session whose holder
was SIGKILLed stayed locked until the deadline passed: a client resuming after a restart was
told where to continue and then refused. Each lease therefore also names its holder: the
process, and the scope in which its process id means something (the running kernel's boot id
and the process's pid namespace). A process in the same scope can then ask the kernel whether
the holder still runs, and take a dead holder's lease over at once. A holder in another scope
(another node, another container's pid namespace) cannot be checked from here: see
services/liveness.py for how such a holder is presumed dead (else its lease runs to its deadline).

A holder is only ever declared dead when that is certain: its scope matches ours and its
process id is gone or now belongs to a process that started at another time (pids are
reused). Anything unknown (no ``/proc``, a malformed name) is treated as alive.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    """A process that may hold leases, named so that other processes can check on it."""

    scope: str  # "<boot id>:<pid namespace>", or "" where the kernel does not say
    pid: int
    started: str  # the process's start time in clock ticks since boot, "" if unknown
    host: str  # for people reading the database; not used to decide anything

    def __str__(self) -> str:
        return f"{self.scope}/{self.pid}/{self.started}/{self.host}"

    @classmethod
    def parse(cls, text: str) -> LeaseHolder | None:
        parts = text.split("/", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(scope=parts[0], pid=int(parts[1]), started=parts[2], host=parts[3])


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _scope(proc: Path) -> str:
    boot_id = _read(proc / "sys/kernel/random/boot_id")
    try:
        pid_namespace = os.readlink(proc / "self/ns/pid")
    except OSError:
        return ""
    return f"{boot_id}:{pid_namespace}" if boot_id else ""


def _start_time(proc: Path, pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat``; None when no such process runs."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return ""
    # The command name (field 2) is in parentheses and may contain spaces or parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        # A killed worker whose parent died too stays a zombie until init reaps it (in a
        # container, pid 1 may never do so): it runs no code and holds nothing.
        return None
    return fields[19] if len(fields) > 19 else ""


class LeaseHolders:
    """This process's name as a holder, and the liveness check for other holders."""

    def __init__(self, proc: Path = _PROC) -> None:
        self._proc = proc
        self._scope = _scope(proc)
        self._current: LeaseHolder | None = None

    def current(self) -> str:
        """This process's holder name (computed again after a fork: the pid changed)."""
        pid = os.getpid()
        if self._current is None or self._current.pid != pid:
            started = _start_time(self._proc, pid) or ""
            self._current = LeaseHolder(self._scope, pid, started, socket.gethostname())
        return str(self._current)

    def is_local(self, name: str) -> bool:
        """Whether the kernel here can tell if holder ``name`` runs (same boot, same pid
        namespace)."""
        holder = LeaseHolder.parse(name.partition("#")[0])
        return holder is not None and bool(self._scope) and holder.scope == self._scope

    def is_dead(self, name: str | None) -> bool:
        """True only when the holder certainly no longer runs (see the module docstring)."""
        holder = LeaseHolder.parse(name) if name else None
        if holder is None or not self._scope or holder.scope != self._scope:
            return False
        started = _start_time(self._proc, holder.pid)
        if started is None:
            return True
        return bool(started) and bool(holder.started) and started != holder.started
