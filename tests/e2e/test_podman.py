"""podman push and pull over plain HTTP (``--tls-verify=false``), with throw-away storage."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .support import (
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    OciLayout,
    RegistryServer,
    Tool,
    describe_response,
    get_manifest,
    image_files,
    media_type,
    new_image_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e


def test_podman_push_remove_pull(
    registry: RegistryServer, podman: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, "podman", cmd=("/app/hello.txt",))

    # Into podman's storage without any network: from the local OCI layout.
    pulled_id = podman("pull", "--quiet", f"oci:{layout_dir}:v1").stdout.strip().splitlines()[-1]
    assert f"sha256:{pulled_id}" == image.config.digest
    local = "localhost/e2e/podman-source:v1"
    podman("tag", pulled_id, local)

    repository = "e2e/podman/roundtrip"
    remote = f"{registry.host}/{repository}:v1"
    digestfile = tmp_path / "push.digest"
    podman("push", "--tls-verify=false", "--digestfile", digestfile, local, remote)
    pushed = digestfile.read_text().strip()

    response = get_manifest(http, repository, "v1")
    assert response.status_code == 200, describe_response(response)
    assert sha256_digest(response.content) == pushed
    manifest = response.json()
    assert manifest["config"]["digest"] == image.config.digest
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = http.get(f"/v2/{repository}/blobs/{descriptor['digest']}")
        assert blob.status_code == 200, describe_response(blob)
        assert sha256_digest(blob.content) == descriptor["digest"]

    podman("rmi", "--all", "--force")
    assert podman("images", "--quiet").stdout.strip() == ""

    podman("pull", "--tls-verify=false", remote)
    [inspected] = podman.json("image", "inspect", remote)
    assert inspected["Id"] == pulled_id
    assert inspected["Digest"] == pushed
    assert f"{registry.host}/{repository}@{pushed}" in inspected["RepoDigests"]
    assert inspected["RootFS"]["Layers"] == list(image.diff_ids)
    assert inspected["Config"]["Cmd"] == ["/app/hello.txt"]

    # And by digest.
    podman("rmi", "--all", "--force")
    by_digest = f"{registry.host}/{repository}@{pushed}"
    podman("pull", "--tls-verify=false", by_digest)
    [inspected] = podman.json("image", "inspect", by_digest)
    assert inspected["Id"] == pulled_id
    assert inspected["RootFS"]["Layers"] == list(image.diff_ids)


def test_podman_manifest_list_push_v2s2(
    registry: RegistryServer, podman: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    """``podman manifest push --all --format v2s2``: a Docker manifest list of two platforms."""
    layout = OciLayout(tmp_path / "layout")
    images = {}
    for arch in ("amd64", "arm64"):
        image = layout.add_image(image_files(f"podman-list-{arch}"), architecture=arch)
        layout.tag(image.manifest, arch)
        images[arch] = image
        podman("pull", "--quiet", "--arch", arch, layout.reference(arch))

    podman("manifest", "create", "localhost/e2e/podman-list:v1")
    for image in images.values():
        image_id = image.config.digest.removeprefix("sha256:")
        podman("manifest", "add", "localhost/e2e/podman-list:v1", f"containers-storage:{image_id}")

    repository = "e2e/podman/list"
    remote = f"{registry.host}/{repository}:list"
    digestfile = tmp_path / "push.digest"
    podman(
        "manifest",
        "push",
        "--all",
        "--format",
        "v2s2",
        "--tls-verify=false",
        "--digestfile",
        digestfile,
        "localhost/e2e/podman-list:v1",
        f"docker://{remote}",
    )
    pushed = digestfile.read_text().strip()

    response = get_manifest(http, repository, "list")
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_DOCKER_LIST
    assert sha256_digest(response.content) == pushed
    listed = response.json()["manifests"]
    assert sorted(entry["platform"]["architecture"] for entry in listed) == ["amd64", "arm64"]
    for entry in listed:
        assert entry["mediaType"] == MT_DOCKER_MANIFEST
        child = get_manifest(http, repository, entry["digest"])
        assert child.status_code == 200, describe_response(child)
        assert media_type(child) == MT_DOCKER_MANIFEST
        assert sha256_digest(child.content) == entry["digest"]
        image = images[entry["platform"]["architecture"]]
        assert child.json()["config"]["digest"] == image.config.digest

    podman("rmi", "--all", "--force")
    podman("pull", "--tls-verify=false", "--arch", "arm64", remote)
    [inspected] = podman.json("image", "inspect", remote)
    assert inspected["Architecture"] == "arm64"
    assert inspected["Id"] == images["arm64"].config.digest.removeprefix("sha256:")
    assert inspected["RootFS"]["Layers"] == list(images["arm64"].diff_ids)
