"""Real clients against ``moorage serve`` keeping its blobs in S3 (a moto server), configured
the classic way: the 2014 registry's ``SETTINGS_FLAVOR=s3`` environment variables, unchanged.
With ``STORAGE_REDIRECT=true`` blob GETs are 307s to pre-signed URLs and the bytes come from
the S3 endpoint; without it they stream through Moorage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moorage.storage.s3 import S3BlobStore
from tests.support_s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

from .support import OciLayout, RegistryServer, Tool, new_image_layout, podman_tool

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["redirect", "proxied"])
def s3_registry(
    request: pytest.FixtureRequest, moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    classic = {
        "SETTINGS_FLAVOR": "s3",
        "AWS_BUCKET": moto.bucket,
        "STORAGE_PATH": f"/{prefix}",
        "STORAGE_REDIRECT": "true" if request.param == "redirect" else "false",
        "AWS_REGION": REGION,
        "AWS_KEY": ACCESS_KEY,
        "AWS_SECRET": SECRET_KEY,
        "AWS_ENDPOINT_URL": moto.endpoint,
    }
    server = RegistryServer("moorage", tmp_path_factory.mktemp(f"s3-{request.param}"), env=classic)
    server.prefix = prefix  # type: ignore[attr-defined]
    server.redirect = request.param == "redirect"  # type: ignore[attr-defined]
    with server:
        yield server


def stored_digests(moto: MotoServer, prefix: str) -> set[str]:
    """Digests of the blobs in the bucket under ``prefix``, as a full sweep of it finds them."""
    store = S3BlobStore.from_settings(moto.settings(prefix=prefix))
    return {str(digest) for digest, _ in store.iter_blobs()}


def test_skopeo_round_trip_through_s3(
    s3_registry: RegistryServer, moto: MotoServer, tmp_path: Path
) -> None:
    skopeo = Tool("skopeo", registry=s3_registry)
    source = OciLayout(tmp_path / "source")
    image = new_image_layout(source.path, f"s3-{s3_registry.port}")
    remote = f"docker://{s3_registry.host}/s3/app:v1"
    skopeo("copy", "--dest-tls-verify=false", source.reference("v1"), remote)

    # The blobs are objects in the bucket under STORAGE_PATH, none on the local disk.
    assert image.blob_digests <= stored_digests(moto, s3_registry.prefix)  # type: ignore[attr-defined]
    assert not (s3_registry.data_dir / "blobs").exists() or not any(
        (s3_registry.data_dir / "blobs").rglob("*/*/*")
    )

    layer = next(iter(image.blob_digests - {image.config.digest}))
    with httpx.Client(base_url=s3_registry.url) as http:
        direct = http.get(f"/v2/s3/app/blobs/{layer}")
        if s3_registry.redirect:  # type: ignore[attr-defined]
            assert direct.status_code == 307
            assert direct.headers["location"].startswith(f"{moto.endpoint}/{moto.bucket}/")
            assert direct.headers["docker-content-digest"] == layer
            fetched = httpx.get(direct.headers["location"], headers={"Range": "bytes=0-9"})
            assert fetched.status_code == 206
            assert fetched.content == source.read_blob(layer)[:10]
        else:
            assert direct.status_code == 200
            assert direct.content == source.read_blob(layer)
        head = http.head(f"/v2/s3/app/blobs/{layer}")
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(source.read_blob(layer)))

    back = OciLayout(tmp_path / "back")
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", remote, back.reference("v1"))
    pulled = back.resolve("v1")
    assert pulled.digest == image.manifest.digest
    assert back.corrupt_blobs() == []
    for digest in image.blob_digests:
        assert back.read_blob(digest) == source.read_blob(digest)


def test_podman_push_and_pull_through_s3(s3_registry: RegistryServer, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    image = new_image_layout(layout, f"s3-podman-{s3_registry.port}")
    with podman_tool(s3_registry, tmp_path) as podman:
        local = podman("pull", "--quiet", f"oci:{layout}:v1").stdout.strip().splitlines()[-1]
        remote = f"{s3_registry.host}/s3/podman:v1"
        podman("push", "--tls-verify=false", local, remote)
        podman("rmi", "--all", "--force")
        podman("pull", "--tls-verify=false", remote)
        [inspected] = podman.json("image", "inspect", remote)
        assert f"sha256:{inspected['Id']}" == image.config.digest
