"""A moto S3 server on a loopback port, for tests and benchmarks that need a real S3 endpoint.

Started as a separate process (moto's own ``moto_server``) so that the code under test talks
HTTP to it exactly as it would to AWS or MinIO.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
import time
import uuid
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def moto_server(bucket: str = "moorage-test") -> Iterator[MotoServer]:
    """Run ``moto_server`` on a free loopback port with ``bucket`` created."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise RuntimeError("the S3 tests need moto's server: pip install 'moto[server]'")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
        yield MotoServer(endpoint, bucket)
    finally:
        process.terminate()
        process.wait(10)
