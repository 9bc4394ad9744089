"""Start and stop the registries under test: Debian's docker-registry (distribution 2.8)
and `moorage serve`, each on a free loopback port with a private temporary root."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

READY_TIMEOUT_S = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def registry_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when GET /v2/ answers 200 or 401 (an OCI registry is listening)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        resp.read()
        return resp.status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


@dataclass
class ManagedServer:
    """A registry process started by the benchmark; stopped (its whole process group) on exit."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # own process group: workers are stopped with it
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before answering; "
                    f"last log lines:\n{self.log_tail()}"
                )
            if registry_answers("127.0.0.1", self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not answer on {self.url} within {timeout:.0f}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        pgid = proc.pid  # start_new_session: the group id is the child's pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            proc.wait(timeout=5)
        # Workers of the group may outlive the leader for a moment; make sure none stay.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def cpu_probe(self) -> Callable[[], float]:
        assert self.proc is not None
        pgid = self.proc.pid
        return lambda: group_cpu_seconds(pgid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds used so far by the live processes of process group pgid."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def cpu_probe_for_pid(pid: int) -> Callable[[], float]:
    """A function giving the CPU seconds of pid's whole process group (server + workers)."""
    pgid = os.getpgid(pid)
    return lambda: group_cpu_seconds(pgid)


DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def distribution_server(binary: str, workdir: Path) -> ManagedServer:
    """Debian's docker-registry with a filesystem root under workdir and deletes enabled."""
    root = workdir / "distribution-root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = workdir / "distribution-config.yml"
    config.write_text(DISTRIBUTION_CONFIG.format(root=root, port=port))
    return ManagedServer(
        name="distribution",
        argv=[binary, "serve", str(config)],
        port=port,
        log_path=workdir / "distribution.log",
    )


def moorage_server(moorage_bin: str, workdir: Path, workers: int | None) -> ManagedServer:
    """`moorage serve` on a free loopback port with a fresh data dir under workdir."""
    data = workdir / "moorage-data"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        moorage_bin,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data),
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return ManagedServer(name="moorage", argv=argv, port=port, log_path=workdir / "moorage.log")


def distribution_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError as e:
        return f"unknown ({e})"
    return (out.stdout or out.stderr).strip()
