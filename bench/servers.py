"""Start and stop the registries under test: Debian's docker-registry (distribution 2.8)
and `moorage serve`, each on a free loopback port with a private temporary root."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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

    def pids(self) -> list[int]:
        """The live processes of the server (its process group: the server and its workers)."""
        assert self.proc is not None
        return group_pids(self.proc.pid)

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


def _group_stats(pgid: int) -> Iterator[tuple[int, list[str]]]:
    """(pid, /proc/<pid>/stat fields after the command name) of each live process of pgid."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid:
            yield int(entry.name), fields


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds used so far by the live processes of process group pgid."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(int(fields[11]) + int(fields[12]) for _, fields in _group_stats(pgid))
    return total / ticks  # utime + stime


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group pgid (a server and its workers)."""
    return [pid for pid, _ in _group_stats(pgid)]


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


def moorage_server(
    moorage_bin: str,
    workdir: Path,
    workers: int | None,
    name: str = "moorage",
    env: dict[str, str] | None = None,
) -> ManagedServer:
    """`moorage serve` on a free loopback port with the data dir workdir/moorage-data (fresh,
    or shared with another instance started the same way). ``env``: extra MOORAGE_* settings."""
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
    return ManagedServer(
        name=name,
        argv=argv,
        port=port,
        log_path=workdir / f"{name}.log",
        env=None if env is None else {**os.environ, **env},
    )


NGINX_BIN = "/usr/sbin/nginx"


def nginx_server(prefix: Path, http_block: str, ready_port: int) -> ManagedServer:
    """nginx in the foreground with ``http_block`` as its whole ``http { }`` content, all its
    files under ``prefix``; ready when ``ready_port`` (one of its listeners) answers GET /v2/."""
    prefix.mkdir(parents=True, exist_ok=True)
    temp = "".join(
        f"    {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # Run as root (a benchmark on a scratch VM), nginx's workers would be `nobody` and could not
    # read Moorage's 0640 blobs; as anyone else the directive is ignored and they keep our uid.
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"{user}worker_processes auto;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n{temp}    access_log off;\n{http_block}\n}}\n"
    )
    argv = [NGINX_BIN, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    argv += ["-g", f"daemon off; pid {prefix / 'nginx.pid'};"]
    return ManagedServer(name="nginx", argv=argv, port=ready_port, log_path=prefix / "nginx.out")


def distribution_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError as e:
        return f"unknown ({e})"
    return (out.stdout or out.stderr).strip()


def group_rss_mib(pgid: int) -> float:
    """Resident memory (MiB) summed over the live processes of process group pgid; shared pages
    count once per process, so this is an upper bound."""
    total_kib = 0
    for pid, _ in _group_stats(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def null_registry_server(workdir: Path) -> ManagedServer:
    """bench/null_registry.py: a registry that discards every push (the client's floor)."""
    bench = Path(__file__).resolve().parent
    port = free_port()
    return ManagedServer(
        name="null-registry",
        argv=[sys.executable, str(bench / "null_registry.py"), "--port", str(port)],
        port=port,
        log_path=workdir / "null-registry.log",
        env={**os.environ, "PYTHONPATH": str(bench)},
    )


def hello_server(workdir: Path, workers: int) -> ManagedServer:
    """bench/hello_app.py: a bare ASGI "hello" app under the granian options of `moorage
    serve`, with ``workers`` workers: the framework's own ceiling."""
    bench = Path(__file__).resolve().parent
    port = free_port()
    return ManagedServer(
        name=f"hello-w{workers}",
        argv=[
            sys.executable,
            str(bench / "hello_app.py"),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        port=port,
        log_path=workdir / f"hello-w{workers}.log",
        env={**os.environ, "PYTHONPATH": str(bench)},
    )
