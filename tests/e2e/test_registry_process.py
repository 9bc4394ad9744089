"""The registry as a process: it answers the API base, survives a TLS probe on its plain-HTTP
port (what clients told ``--tls-verify=false`` send first), and keeps its data across a graceful
restart and across SIGKILL."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from .support import (
    OciLayout,
    RegistryServer,
    Tool,
    describe_response,
    get_manifest,
    new_image_layout,
    push_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

TLS_PROBE_SECONDS = 5.0


def test_api_base_answers(registry: RegistryServer, http: httpx.Client) -> None:
    response = http.get("/v2/")
    assert response.status_code == 200, describe_response(response)
    head = http.head("/v2/")
    assert head.status_code == 200, describe_response(head)


def test_tls_client_hello_on_plain_port_fails_fast(registry: RegistryServer) -> None:
    """containers/image clients (skopeo, podman, buildah) with ``--tls-verify=false`` first try
    HTTPS on the port and fall back to plain HTTP only after the handshake fails. The server must
    make it fail promptly (Distribution answers the ClientHello with HTTP 400), not hang, and must
    keep serving afterwards."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    started = time.monotonic()
    outcome = "handshake succeeded (a TLS server on the plain-HTTP port?)"
    with socket.create_connection(("127.0.0.1", registry.port), timeout=TLS_PROBE_SECONDS) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
        except TimeoutError:
            pytest.fail(
                f"TLS ClientHello to plain-HTTP {registry.host} got no answer within "
                f"{TLS_PROBE_SECONDS:.0f}s; clients using --tls-verify=false would hang here "
                f"instead of falling back to HTTP\n{registry.log_tail()}",
                pytrace=False,
            )
        except (ssl.SSLError, ConnectionError, OSError) as error:
            outcome = f"{type(error).__name__}: {error}"
    elapsed = time.monotonic() - started
    assert "handshake succeeded" not in outcome, outcome
    assert elapsed < TLS_PROBE_SECONDS, f"TLS probe took {elapsed:.1f}s ({outcome})"

    response = httpx.get(f"{registry.url}/v2/", timeout=5.0)
    assert response.status_code == 200, describe_response(response)


@pytest.mark.parametrize("kill", [False, True], ids=["graceful-restart", "sigkill-restart"])
def test_data_survives_restart(
    restartable_registry: RegistryServer, tmp_path: Path, kill: bool
) -> None:
    server = restartable_registry
    skopeo = Tool("skopeo", registry=server)
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, f"restart-{kill}")
    layout = OciLayout(layout_dir)
    repository = "e2e/restart/image"
    dest = f"docker://{server.host}/{repository}:v1"
    push_layout(skopeo, layout, "v1", dest, tmp_path, "--preserve-digests")
    old_pid = server.pid

    server.restart(kill=kill)
    assert server.pid != old_pid

    with server.client() as http:
        response = get_manifest(http, repository, "v1")
        assert response.status_code == 200, describe_response(response)
        assert sha256_digest(response.content) == image.manifest.digest
        for digest in sorted(image.blob_digests):
            blob = http.get(f"/v2/{repository}/blobs/{digest}")
            assert blob.status_code == 200, describe_response(blob)
            assert blob.content == layout.read_blob(digest)
    info = skopeo.json("inspect", "--tls-verify=false", dest)
    assert info["Digest"] == image.manifest.digest
    # Still writable after the restart.
    pushed = push_layout(
        skopeo, layout, "v1", f"docker://{server.host}/{repository}:after", tmp_path
    )
    assert pushed == image.manifest.digest
