"""nginx as a child process running one of the documented configs under docs/deploy/, for the
tests that put it in front of Moorage (test_nginx.py: one node; test_cluster.py: several)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import httpx
import pytest

from .support import (
    STARTUP_TIMEOUT,
    STOP_TIMEOUT,
    RegistryServer,
    describe_response,
    fail_missing,
    free_port,
)
from .tls import Pki

NGINX = "/usr/sbin/nginx"
DOCUMENTED_CONF = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx.conf"
DOCUMENTED_BACKEND = "127.0.0.1:5000"


def render(conf: str, replacements: Mapping[str, str]) -> str:
    """``conf`` with each literal replaced; a literal the file no longer has fails the test,
    so the documented file and this test cannot drift apart."""
    for literal, value in replacements.items():
        assert literal in conf, f"the documented nginx config no longer contains {literal!r}"
        conf = conf.replace(literal, value)
    return conf


class NginxServer:
    """nginx running a documented config (docs/deploy/nginx.conf unless ``conf`` names another,
    such as docs/deploy/nginx-cluster.conf) from ``prefix`` as a child process (daemon off)."""

    def __init__(
        self,
        prefix: Path,
        pki: Pki,
        backends: int | Mapping[str, int],
        variant: Mapping[str, str] | None = None,
        conf: Path = DOCUMENTED_CONF,
    ) -> None:
        """``backends``: the port of the one Moorage behind docs/deploy/nginx.conf, or each
        upstream address the documented ``conf`` names mapped to the loopback port that stands
        in for it. ``variant``: further literal replacements, e.g. uncommenting the auth_basic
        lines."""
        self.prefix = prefix
        self.variant = dict(variant or {})
        self.pki = pki
        self.template = conf
        self.port = free_port()
        self.http_port = free_port()
        self.conf = prefix / "nginx.conf"
        self.error_log = prefix / "error.log"
        documented = {DOCUMENTED_BACKEND: backends} if isinstance(backends, int) else backends
        self.backends = {address: f"127.0.0.1:{port}" for address, port in documented.items()}
        self._proc: subprocess.Popen[bytes] | None = None
        self._output: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60.0, verify=self.pki.ssl_context())

    def write_conf(self) -> None:
        temp = self.prefix / "temp"
        temp.mkdir(exist_ok=True)
        temp_paths = "".join(
            f"\n    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        conf = render(
            self.template.read_text(),
            {
                # Workers run as whoever runs the test (the directive is ignored for non-root).
                "user www-data;": f"user {getpass.getuser()};",
                "worker_processes auto;": "worker_processes 1;",
                "listen 443 ssl http2;": f"listen 127.0.0.1:{self.port} ssl http2;",
                "listen [::]:443 ssl http2;": "",
                "listen 80;": f"listen 127.0.0.1:{self.http_port};",
                "listen [::]:80;": "",
                "/etc/ssl/moorage/fullchain.pem": str(self.pki.server_cert),
                "/etc/ssl/moorage/privkey.pem": str(self.pki.server_key),
                "/var/log/nginx/moorage.access.log": str(self.prefix / "access.log"),
                **self.backends,
                # Nothing under /var/lib/nginx: a test writes only in its own directory.
                "http {": "http {" + temp_paths,
                **self.variant,
            },
        )
        self.conf.write_text(conf)

    def start(self) -> None:
        if not os.access(NGINX, os.X_OK):
            fail_missing("nginx")
        self.write_conf()
        argv = [
            NGINX,
            "-p",
            str(self.prefix),
            "-c",
            str(self.conf),
            "-e",
            str(self.error_log),
            "-g",
            f"daemon off; pid {self.prefix / 'nginx.pid'};",
        ]
        self._output = (self.prefix / "nginx.out").open("ab")
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self.stop()
                pytest.fail(
                    f"nginx exited with code {self._proc.returncode}: {shlex.join(argv)}\n"
                    f"{self.log_tail()}",
                    pytrace=False,
                )
            try:
                with self.client() as client:
                    response = client.get("/v2/", timeout=2.0)
                if response.status_code in (200, 401):
                    return
                last = describe_response(response)
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"nginx did not proxy GET /v2/: {last}\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        if self._output is not None:
            self._output.close()
            self._output = None

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.prefix / "nginx.out", self.error_log):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)


@contextlib.contextmanager
def running(server: RegistryServer | NginxServer) -> Iterator[None]:
    server.start()
    try:
        yield
    finally:
        server.stop()


def moorage_behind_nginx(workdir: Path, config: str) -> RegistryServer:
    """``moorage serve --config`` with ``config`` (YAML), on its own loopback port."""
    (workdir / "moorage.yaml").write_text(config)
    return RegistryServer(
        "moorage", workdir, extra_args=["--config", str(workdir / "moorage.yaml")]
    )
