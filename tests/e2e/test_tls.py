"""Built-in TLS: ``moorage serve --tls-cert --tls-key`` serves HTTPS that real clients verify
against a CA of the test's own; anything else is refused, cleanly and at once."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .support import Tool, describe_response, free_port, moorage_executable
from .tls import Pki, TlsRegistryServer, make_pki, skopeo_round_trip

pytestmark = pytest.mark.e2e

# Well under the e2e command timeout: a refusal must be immediate, not a hang.
PROMPT_FAILURE_SECONDS = 5.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsRegistryServer]:
    server = TlsRegistryServer(tmp_path_factory.mktemp("tls-registry"), pki)
    with server:
        yield server


@pytest.fixture
def tls_skopeo(tls_registry: TlsRegistryServer) -> Tool:
    return Tool("skopeo", registry=tls_registry)


def test_start_up_line_names_https(tls_registry: TlsRegistryServer) -> None:
    assert f"serving on https://{tls_registry.host}" in tls_registry.log_path.read_text()


def test_skopeo_copies_in_and_out_over_verified_https(
    tls_registry: TlsRegistryServer, tls_skopeo: Tool, pki: Pki, tmp_path: Path
) -> None:
    image = skopeo_round_trip(tls_skopeo, tls_registry.host, pki.cert_dir, tmp_path, "tls/demo")
    with tls_registry.client() as client:
        response = client.get(
            f"/v2/tls/demo/manifests/{image.manifest.digest}",
            headers={"Accept": image.manifest.media_type},
        )
    assert response.status_code == 200, describe_response(response)
    assert response.content == image.manifest_bytes


def test_localhost_name_is_in_the_certificate_too(
    tls_registry: TlsRegistryServer, tls_skopeo: Tool, pki: Pki, tmp_path: Path
) -> None:
    skopeo_round_trip(
        tls_skopeo, f"localhost:{tls_registry.port}", pki.cert_dir, tmp_path, "tls/by-name"
    )


def test_plain_http_to_the_tls_port_fails_cleanly(tls_registry: TlsRegistryServer) -> None:
    started = time.monotonic()
    with pytest.raises(httpx.HTTPError) as refused:
        httpx.get(f"http://{tls_registry.host}/v2/", timeout=PROMPT_FAILURE_SECONDS)
    assert not isinstance(refused.value, httpx.TimeoutException), refused.value
    assert time.monotonic() - started < PROMPT_FAILURE_SECONDS
    # ...and the server is none the worse for it.
    with tls_registry.client() as client:
        assert client.get("/v2/").status_code == 200


def test_client_that_does_not_trust_the_ca_is_refused(
    tls_registry: TlsRegistryServer, tls_skopeo: Tool, tmp_path: Path
) -> None:
    # The system's trust store, which has never heard of the test CA.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/", timeout=PROMPT_FAILURE_SECONDS)
    # Another CA (a look-alike with the same names) is no better.
    stranger = make_pki(tmp_path / "other-ca")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_registry.url}/v2/", verify=stranger.ssl_context())
    # skopeo verifying TLS, without and with the wrong CA.
    for cert_args in ((), ("--cert-dir", str(stranger.cert_dir))):
        result = tls_skopeo(
            "inspect",
            "--tls-verify=true",
            *cert_args,
            f"docker://{tls_registry.host}/tls/demo:v1",
            check=False,
        )
        assert result.returncode != 0
        assert "certificate signed by unknown authority" in result.stderr, result.stderr


# ---- start-up refusals: a bad TLS (or proxy) configuration must never fall back to plain HTTP


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``moorage serve`` expecting it to refuse to start (a timeout means it served)."""
    argv = [moorage_executable(), "serve", "--port", str(free_port())]
    argv += ["--data-dir", str(tmp_path / "data"), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def assert_refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr


def test_cert_without_key_is_refused(pki: Pki, tmp_path: Path) -> None:
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert))
    assert_refused(result, "must be given together")
    result = serve(tmp_path, "--tls-key", str(pki.server_key))
    assert_refused(result, "must be given together")


def test_unreadable_cert_or_key_is_refused(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    result = serve(tmp_path, "--tls-cert", str(missing), "--tls-key", str(pki.server_key))
    assert_refused(result, f"cannot read TLS certificate {missing}")
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(missing))
    assert_refused(result, f"cannot read TLS key {missing}")


def test_key_that_does_not_match_the_cert_is_refused(pki: Pki, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other")
    result = serve(tmp_path, "--tls-cert", str(pki.server_cert), "--tls-key", str(other.server_key))
    assert_refused(result, "cannot be used together")
    # The refusal names files, never their contents.
    assert "PRIVATE KEY" not in result.stderr


def test_config_file_tls_section_is_checked_too(pki: Pki, tmp_path: Path) -> None:
    """tls.cert without tls.key in the YAML is refused like the flags are."""
    config = tmp_path / "moorage.yaml"
    config.write_text(f"tls:\n  cert: {pki.server_cert}\n")
    assert_refused(serve(tmp_path, "--config", str(config)), "must be given together")


def test_trusted_proxy_that_is_not_an_address_is_refused(tmp_path: Path) -> None:
    """proxy.trusted goes with TLS termination in front (docs/deploy/nginx.md): a host name
    there would silently trust nobody, so it stops the start instead."""
    config = tmp_path / "moorage.yaml"
    config.write_text('proxy:\n  trusted: ["127.0.0.1", "nginx.internal"]\n')
    result = serve(tmp_path, "--config", str(config))
    assert_refused(result, "'nginx.internal' is not an IP address or CIDR network")
