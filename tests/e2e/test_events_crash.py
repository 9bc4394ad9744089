"""An event committed but not yet delivered when the server is SIGKILLed is delivered after the
restart, with the same id (the outbox is in the database, written with the change)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
import yaml

from moorage.events.signature import verify
from tests.events_receiver import Receiver

from .support import RegistryServer, registry_kind

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SECRET = "e2e-secret"

pytestmark = pytest.mark.skipif(registry_kind() != "moorage", reason="Moorage's own events")


def _push(client: httpx.Client, repo: str, tag: str) -> str:
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", content=config).raise_for_status()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/octet-stream",
                "digest": digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    response = client.put(
        f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST}
    )
    response.raise_for_status()
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def test_an_event_survives_sigkill_before_delivery(tmp_path: Path) -> None:
    receiver = Receiver()  # down for now
    config = tmp_path / "moorage.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "events": {
                    "allow_private_networks": True,
                    "backoff_initial": 0.5,
                    "backoff_max": 1,
                    "endpoints": [{"url": receiver.url, "secret": SECRET}],
                }
            }
        )
    )
    server = RegistryServer(
        "moorage", tmp_path / "registry", extra_args=["--config", str(config), "--workers", "2"]
    )
    with server:
        with httpx.Client(base_url=server.url) as client:
            digest = _push(client, "team/app", "1.0")
            backlog = client.get("/readyz").json()["checks"]["events"]["backlog"]
            assert backlog >= 1
        server.restart(kill=True)
        receiver.start()
        try:
            [received] = receiver.wait_for(1, 30)
        finally:
            receiver.stop()
    event = json.loads(received.body)
    assert verify(SECRET, received.body, received.headers["moorage-signature"])
    assert event["type"] == "dev.moorage.manifest.pushed"
    assert event["data"]["digest"] == digest
    assert event["data"]["tags"] == ["1.0"]
