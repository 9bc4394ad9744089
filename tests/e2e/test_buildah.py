"""buildah builds an image from scratch, pushes it over plain HTTP; skopeo pulls it back."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import httpx
import pytest

from .support import (
    MT_OCI_MANIFEST,
    OciLayout,
    RegistryServer,
    Tool,
    describe_response,
    get_manifest,
    media_type,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

PAYLOAD = b"built by buildah for the moorage e2e suite\n"


def layer_files(blob: bytes) -> dict[str, bytes]:
    """Regular files in a (possibly gzip-compressed) layer tar."""
    data = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None:
                files[member.name.removeprefix("./")] = extracted.read()
    return files


def test_buildah_scratch_push_then_skopeo_pull(
    registry: RegistryServer,
    buildah: Tool,
    skopeo: Tool,
    http: httpx.Client,
    tmp_path: Path,
) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)
    container = buildah("from", "scratch").stdout.strip().splitlines()[-1]
    buildah("copy", container, payload, "/payload.txt")
    buildah(
        "config",
        "--cmd",
        "/payload.txt",
        "--label",
        "org.moorage.e2e=buildah",
        "--arch",
        "amd64",
        "--os",
        "linux",
        container,
    )
    image_id = buildah("commit", container, "e2e-buildah:v1").stdout.strip().splitlines()[-1]

    repository = "e2e/buildah/scratch"
    dest = f"docker://{registry.host}/{repository}:v1"
    digestfile = tmp_path / "push.digest"
    buildah("push", "--tls-verify=false", "--digestfile", digestfile, "e2e-buildah:v1", dest)
    pushed = digestfile.read_text().strip()

    response = get_manifest(http, repository, "v1")
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_OCI_MANIFEST
    assert sha256_digest(response.content) == pushed
    assert response.json()["config"]["digest"] == f"sha256:{image_id}"

    info = skopeo.json("inspect", "--tls-verify=false", dest)
    assert info["Digest"] == pushed
    assert info["Labels"]["org.moorage.e2e"] == "buildah"

    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", dest, f"oci:{out}:v1")
    pulled = OciLayout(out)
    assert pulled.resolve("v1").digest == pushed
    assert pulled.read_blob(pushed) == response.content
    assert pulled.corrupt_blobs() == []
    manifest = pulled.read_json(pushed)
    assert manifest["config"]["digest"] == f"sha256:{image_id}"
    [layer] = manifest["layers"]
    assert layer_files(pulled.read_blob(layer["digest"])) == {"payload.txt": PAYLOAD}
