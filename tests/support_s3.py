"""A moto S3 server on a loopback port, for tests and benchmarks that need a real S3 endpoint.

Started as a separate process (moto's own ``moto_server``) so that the code under test talks
HTTP to it exactly as it would to AWS or MinIO.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from moorage.config import S3Settings

ACCESS_KEY = "moorage-test"
SECRET_KEY = "moorage-test-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    endpoint: str
    bucket: str
    pid: int | None = None  # the server's process (SIGSTOP it to make a hung endpoint)

    def settings(self, **overrides: object) -> S3Settings:
        """Settings for a fresh prefix of the bucket (tests never see each other's keys)."""
        values: dict[str, object] = {
            "bucket": self.bucket,
            "prefix": f"t-{uuid.uuid4().hex[:12]}",
            "region": REGION,
            "endpoint_url": self.endpoint,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SecretStr(SECRET_KEY),
            "part_size_bytes": 5 * 1024 * 1024,
        }
        values.update(overrides)
        return S3Settings.model_validate(values)

    def storage_overrides(self, redirect: bool = False) -> dict[str, object]:
        """``storage`` settings overrides (for load_settings) that put blobs in this server."""
        s3 = self.settings(redirect=redirect)
        return {
            "backend": "s3",
            "s3": {**s3.model_dump(), "secret_access_key": SECRET_KEY},
        }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server(
    bucket: str = "moorage-test", env: dict[str, str] | None = None
) -> Iterator[MotoServer]:
    """Run ``moto_server`` on a free loopback port with ``bucket`` created; ``env`` adds to
    its environment (``INITIAL_NO_AUTH_ACTION_COUNT`` turns on moto's IAM checks)."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise RuntimeError("the S3 tests need moto's server: pip install 'moto[server]'")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # moto accepts unsigned requests: creating the bucket needs no SDK.
                httpx.put(f"{endpoint}/{bucket}", timeout=2).raise_for_status()
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield MotoServer(endpoint, bucket, process.pid)
    finally:
        process.terminate()
        process.wait(10)


class FaultyProxy:
    """A loopback HTTP proxy in front of an S3 server that can be told to fail every request
    (``fail_with = (503, "SlowDown")``) or to forward them again (``fail_with = None``).
    ``requests`` counts what reached it by method (bench/cluster_cost.py reads it)."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        self.fail_with: tuple[int, str] | None = None
        self.requests: Counter[str] = Counter()
        proxy = self
        client = httpx.Client(base_url=target, timeout=30)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _relay(self) -> None:
                proxy.requests[self.command] += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.fail_with is not None:
                    status, code = proxy.fail_with
                    payload = f"<Error><Code>{code}</Code><Message>fault</Message></Error>"
                    self._answer(status, {"Content-Type": "application/xml"}, payload.encode())
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                answer = client.request(self.command, self.path, headers=headers, content=body)
                keep = {
                    "content-type",
                    "etag",
                    "last-modified",
                    "content-range",
                    "x-amz-version-id",
                }
                relayed = {k: v for k, v in answer.headers.items() if k.lower() in keep}
                self._answer(answer.status_code, relayed, answer.content)

            def _answer(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._client = client

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()
