"""A real Prometheus scrapes `moorage serve --workers 2`, and its query API holds exactly what
a known push and pull add up to, whichever worker answered each request and each scrape."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.e2e.support import (
    MT_OCI_CONFIG,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    RegistryServer,
    free_port,
    registry_kind,
    require_tool,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

REPO = "ops/metrics"
PULLS = 24  # manifest GETs, each on a new connection: the kernel spreads them over both workers
SCRAPE_DEADLINE = 60.0


@pytest.fixture
def registry_with_metrics(tmp_path: Path) -> Iterator[RegistryServer]:
    if registry_kind() != "moorage":
        pytest.fail("this test is about moorage's metrics; unset E2E_REGISTRY_CMD")
    server = RegistryServer(
        "moorage",
        tmp_path / "registry",
        extra_args=["--workers", "2"],
        env={
            # A directory we can look into (serve empties it first); and JSON request lines.
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "MOORAGE_LOG__FORMAT": "json",
        },
    )
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"left by an earlier run")
    with server:
        yield server


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "moorage", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                require_tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def query(self, expression: str) -> float | None:
        """The instant value of ``expression`` (one series), or None when it has none yet."""
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": expression})
        except httpx.HTTPError:
            return None  # not listening yet
        if response.status_code != 200:
            return None
        result = response.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def push_and_pull(registry: RegistryServer) -> dict[str, int]:
    """Push a config, a layer (one by a session) and a manifest; pull them. Returns the sizes."""
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = hashlib.sha512(b"metrics layer").digest() * 1024  # 64 KiB
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(config), "size": 37},
            "layers": [
                {"mediaType": MT_OCI_LAYER_GZIP, "digest": sha256_digest(layer), "size": len(layer)}
            ],
        }
    ).encode()
    assert len(config) == 37
    url = registry.url
    posted = httpx.post(f"{url}/v2/{REPO}/blobs/uploads/?digest={sha256_digest(config)}",
                        content=config)  # fmt: skip
    assert posted.status_code == 201
    session = httpx.post(f"{url}/v2/{REPO}/blobs/uploads/").headers["location"]
    assert httpx.patch(f"{url}{session}", content=layer).status_code == 202
    assert httpx.put(f"{url}{session}?digest={sha256_digest(layer)}").status_code == 201
    put = httpx.put(f"{url}/v2/{REPO}/manifests/v1", content=manifest,
                    headers={"Content-Type": MT_OCI_MANIFEST})  # fmt: skip
    assert put.status_code == 201
    for _ in range(PULLS):
        assert httpx.get(f"{url}/v2/{REPO}/manifests/v1").content == manifest
    assert httpx.get(f"{url}/v2/{REPO}/blobs/{sha256_digest(layer)}").content == layer
    return {"received": len(config) + len(layer), "sent": len(layer)}


def pids_that_served_pulls(metrics_dir: Path) -> set[str]:
    """The processes whose value files count manifest GETs (prometheus-client's own reader)."""
    pids = set()
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, value, _, _ in values:
            _, name, labels, _ = json.loads(key)
            if name == "moorage_http_requests_total" and labels.get("method") == "GET" and value:
                pids.add(path.stem.rsplit("_", 1)[1])
    return pids


def test_prometheus_stores_what_every_worker_counted(
    registry_with_metrics: RegistryServer, tmp_path: Path
) -> None:
    registry = registry_with_metrics
    metrics_dir = tmp_path / "metrics"
    assert not (metrics_dir / "counter_1.db").exists()  # emptied at start
    sizes = push_and_pull(registry)

    manifests = 'route="/v2/{name}/manifests/{reference}"'
    expected = {
        f'sum(moorage_http_requests_total{{{manifests},method="GET",status="2xx"}})': PULLS,
        f'sum(moorage_http_requests_total{{{manifests},method="PUT",status="2xx"}})': 1,
        f'sum(moorage_http_request_duration_seconds_count{{{manifests},method="GET"}})': PULLS,
        "sum(moorage_blob_received_bytes_total)": sizes["received"],
        "sum(moorage_blob_sent_bytes_total)": sizes["sent"],
        'sum(moorage_upload_sessions_total{event="started"})': 1,
        'sum(moorage_upload_sessions_total{event="completed"})': 1,
        "max(moorage_repositories)": 1,
        "max(moorage_manifests)": 1,
        "max(moorage_tags)": 1,
        # Each worker's pool may hold pool_size + max_overflow (16 + 32) connections.
        "sum(moorage_db_pool_connections_max)": 2 * 48,
        'sum(moorage_storage_operation_duration_seconds_count{backend="filesystem",'
        'operation="read"})': 1,
        "sum(moorage_storage_errors_total) or vector(0)": 0,
        'up{job="moorage"}': 1,
    }
    prometheus = Prometheus(tmp_path, registry.host)
    try:
        deadline = time.monotonic() + SCRAPE_DEADLINE
        stored: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            stored = {expression: prometheus.query(expression) for expression in expected}
            if stored == expected:
                break
            time.sleep(1)
        assert stored == expected, registry.log_tail()
    finally:
        prometheus.stop()

    # Both workers answered manifest GETs, so the figures above are sums over processes.
    assert len(pids_that_served_pulls(metrics_dir)) == 2

    # One JSON line per request, from both workers; no repository in a metric, but in the log.
    lines = [
        json.loads(line)
        for line in registry.log_path.read_text().splitlines()
        if line.startswith("{") and '"message":"request"' in line
    ]
    pulls = [line for line in lines if line.get("route") == "/v2/{name}/manifests/{reference}"
             and line["method"] == "GET"]  # fmt: skip
    assert len(pulls) == PULLS
    assert {line["repository"] for line in pulls} == {REPO}
    assert all(line["status"] == 200 and len(line["request_id"]) == 32 for line in pulls)
