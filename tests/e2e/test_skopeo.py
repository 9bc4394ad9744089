"""skopeo (containers/image) against the registry: push, inspect, tags, pull back, multi-arch
indexes, Docker schema 2, deletion. Images are built locally (umoci or by hand), no network."""

from __future__ import annotations

import gzip
import io
import json
import random
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .support import (
    MT_DOCKER_CONFIG,
    MT_DOCKER_LAYER_GZIP,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    BuiltImage,
    OciLayout,
    RegistryServer,
    Tool,
    describe_response,
    get_manifest,
    image_files,
    media_type,
    new_image_layout,
    push_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e


def build_with_umoci(umoci: Tool, tmp_path: Path, tag: str = "v1") -> OciLayout:
    """A layout built by umoci: init, new, insert a small rootfs, then set the config."""
    rootfs = tmp_path / "rootfs"
    for name, content in image_files("umoci").items():
        (rootfs / name).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / name).write_bytes(content)
    layout_dir = tmp_path / "umoci-layout"
    image = f"{layout_dir}:{tag}"
    umoci("init", "--layout", layout_dir)
    umoci("new", "--image", image)
    umoci("insert", "--image", image, rootfs, "/")
    umoci(
        "config",
        "--image",
        image,
        "--config.cmd",
        "/app/hello.txt",
        "--config.label",
        "org.moorage.e2e=umoci",
        "--architecture",
        "amd64",
        "--os",
        "linux",
    )
    return OciLayout(layout_dir)


def assert_blobs_served(
    http: httpx.Client, repository: str, layout: OciLayout, digests: set[str]
) -> None:
    for digest in sorted(digests):
        response = http.get(f"/v2/{repository}/blobs/{digest}")
        assert response.status_code == 200, describe_response(response)
        assert sha256_digest(response.content) == digest
        assert response.content == layout.read_blob(digest)


def test_push_umoci_image_inspect_and_pull_back(
    registry: RegistryServer, skopeo: Tool, umoci: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    layout = build_with_umoci(umoci, tmp_path)
    source = layout.resolve("v1")
    manifest = layout.read_json(source.digest)
    blobs = layout.image_blobs(source.digest)
    repository = "e2e/skopeo/umoci"
    dest = f"docker://{registry.host}/{repository}:v1"

    pushed = push_layout(skopeo, layout, "v1", dest, tmp_path, "--preserve-digests")
    assert pushed == source.digest

    info = skopeo.json("inspect", "--tls-verify=false", dest)
    assert info["Digest"] == source.digest
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    assert info["Architecture"] == "amd64"
    assert info["Labels"] == {"org.moorage.e2e": "umoci"}

    config = skopeo.json("inspect", "--tls-verify=false", "--config", dest)
    assert config["config"]["Cmd"] == ["/app/hello.txt"]

    # The registry serves exactly the bytes that were pushed, under their digests.
    response = get_manifest(http, repository, "v1")
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_OCI_MANIFEST
    assert response.content == layout.read_blob(source.digest)
    assert response.headers.get("docker-content-digest") == source.digest
    assert_blobs_served(http, repository, layout, blobs)

    # Pull it back into a new layout: same manifest, same blobs.
    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", dest, f"oci:{out}:pulled")
    pulled = OciLayout(out)
    assert pulled.resolve("pulled").digest == source.digest
    assert pulled.image_blobs(source.digest) == blobs
    assert pulled.corrupt_blobs() == []
    for digest in blobs | {source.digest}:
        assert pulled.read_blob(digest) == layout.read_blob(digest)


def test_list_tags(registry: RegistryServer, skopeo: Tool, tmp_path: Path) -> None:
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, "tags")
    layout = OciLayout(layout_dir)
    repository = f"{registry.host}/e2e/skopeo/tags"
    tags = ["v1", "v1.1", "latest", "2024-01-01"]
    for tag in tags:
        pushed = push_layout(skopeo, layout, "v1", f"docker://{repository}:{tag}", tmp_path)
        assert pushed == image.manifest.digest

    listing = skopeo.json("list-tags", "--tls-verify=false", f"docker://{repository}")
    assert listing["Repository"] == repository
    assert sorted(listing["Tags"]) == sorted(tags)
    for tag in tags:
        info = skopeo.json("inspect", "--tls-verify=false", f"docker://{repository}:{tag}")
        assert info["Digest"] == image.manifest.digest


def test_copy_between_repositories(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    """Registry to registry; containers/image mounts the blobs across repositories."""
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, "cross-repo")
    layout = OciLayout(layout_dir)
    source = f"docker://{registry.host}/e2e/skopeo/mount-source:v1"
    push_layout(skopeo, layout, "v1", source, tmp_path, "--preserve-digests")

    target_repository = "e2e/skopeo/mount-target"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",
        source,
        f"docker://{registry.host}/{target_repository}:copied",
    )
    response = get_manifest(http, target_repository, "copied")
    assert response.status_code == 200, describe_response(response)
    assert sha256_digest(response.content) == image.manifest.digest
    assert_blobs_served(http, target_repository, layout, image.blob_digests)


def test_multi_arch_index_all(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    layout = OciLayout(tmp_path / "multi")
    images: list[BuiltImage] = [
        layout.add_image(image_files(f"multi-{arch}"), architecture=arch)
        for arch in ("amd64", "arm64")
    ]
    index, index_bytes = layout.add_index(images)
    layout.tag(index, "multi")
    repository = "e2e/skopeo/multi"
    dest = f"docker://{registry.host}/{repository}:multi"

    pushed = push_layout(skopeo, layout, "multi", dest, tmp_path, "--all", "--preserve-digests")
    assert pushed == index.digest

    response = get_manifest(http, repository, "multi")
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_OCI_INDEX
    assert response.content == index_bytes
    for image in images:
        child = get_manifest(http, repository, image.manifest.digest)
        assert child.status_code == 200, describe_response(child)
        assert media_type(child) == MT_OCI_MANIFEST
        assert child.content == image.manifest_bytes
        assert_blobs_served(http, repository, layout, image.blob_digests)

    raw = skopeo("inspect", "--tls-verify=false", "--raw", dest).stdout
    assert json.loads(raw) == json.loads(index_bytes)
    for image in images:
        info = skopeo.json(
            "inspect", "--tls-verify=false", "--override-arch", image.architecture, dest
        )
        assert info["Architecture"] == image.architecture
        assert info["Layers"] == [layer.digest for layer in image.layers]

    out = tmp_path / "pulled"
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--all",
        "--preserve-digests",
        dest,
        f"oci:{out}:multi",
    )
    pulled = OciLayout(out)
    assert pulled.resolve("multi").digest == index.digest
    assert pulled.read_blob(index.digest) == index_bytes
    for image in images:
        assert pulled.read_blob(image.manifest.digest) == image.manifest_bytes
        assert pulled.image_blobs(image.manifest.digest) == image.blob_digests
    assert pulled.corrupt_blobs() == []


def test_delete(registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path) -> None:
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, "delete")
    layout = OciLayout(layout_dir)
    repository = "e2e/skopeo/delete"
    dest = f"docker://{registry.host}/{repository}:doomed"
    push_layout(skopeo, layout, "v1", dest, tmp_path, "--preserve-digests")
    assert skopeo.json("inspect", "--tls-verify=false", dest)["Digest"] == image.manifest.digest

    skopeo("delete", "--tls-verify=false", dest)

    gone = skopeo("inspect", "--tls-verify=false", dest, check=False)
    assert gone.returncode != 0, f"image still inspectable after delete:\n{gone.stdout}"
    for reference in ("doomed", image.manifest.digest):
        response = get_manifest(http, repository, reference)
        assert response.status_code == 404, describe_response(response)
        codes = [error.get("code") for error in response.json().get("errors", [])]
        assert "MANIFEST_UNKNOWN" in codes, describe_response(response)
    tags = skopeo(
        "list-tags", "--tls-verify=false", f"docker://{registry.host}/{repository}", check=False
    )
    if tags.returncode == 0:
        assert "doomed" not in (json.loads(tags.stdout)["Tags"] or [])


def test_docker_schema2_push_and_pull(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, "v2s2")
    layout = OciLayout(layout_dir)
    repository = "e2e/skopeo/v2s2"
    dest = f"docker://{registry.host}/{repository}:v2s2"

    pushed = push_layout(skopeo, layout, "v1", dest, tmp_path, "--format", "v2s2")
    assert pushed != image.manifest.digest  # a converted manifest

    response = get_manifest(http, repository, "v2s2", accept=MT_DOCKER_MANIFEST)
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_DOCKER_MANIFEST
    assert sha256_digest(response.content) == pushed
    assert response.headers.get("docker-content-digest") == pushed
    manifest = response.json()
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MT_DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == MT_DOCKER_CONFIG
    # The compressed layer is the same blob; only its media type changes.
    assert [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]] == [
        (MT_DOCKER_LAYER_GZIP, layer.digest) for layer in image.layers
    ]
    assert image.layers[0].media_type == MT_OCI_LAYER_GZIP

    info = skopeo.json("inspect", "--tls-verify=false", dest)
    assert info["Digest"] == pushed

    # Pull back as-is (dir: keeps the manifest bytes) and check every blob.
    out = tmp_path / "pulled-dir"
    skopeo("copy", "--src-tls-verify=false", dest, f"dir:{out}")
    pulled_manifest = (out / "manifest.json").read_bytes()
    assert sha256_digest(pulled_manifest) == pushed
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = (out / descriptor["digest"].removeprefix("sha256:")).read_bytes()
        assert sha256_digest(blob) == descriptor["digest"]
        assert len(blob) == descriptor["size"]
    layer_blob = (out / image.layers[0].digest.removeprefix("sha256:")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer_blob))) as tar:
        member = tar.extractfile("app/hello.txt")
        assert member is not None
        assert member.read() == b"hello from v2s2\n"


LARGE_LAYER_BYTES = 24 * 1024 * 1024


def test_large_layer_roundtrip(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    """A 24 MiB incompressible layer goes up and comes back intact."""
    payload = random.Random("moorage-large-layer").randbytes(LARGE_LAYER_BYTES)
    layout = OciLayout(tmp_path / "layout")
    image = layout.add_image({"app/large.bin": payload}, compresslevel=1)
    layout.tag(image.manifest, "v1")
    [layer] = image.layers
    assert layer.size > LARGE_LAYER_BYTES
    repository = "e2e/skopeo/large"
    dest = f"docker://{registry.host}/{repository}:v1"

    pushed = push_layout(skopeo, layout, "v1", dest, tmp_path, "--preserve-digests")
    assert pushed == image.manifest.digest

    head = http.head(f"/v2/{repository}/blobs/{layer.digest}")
    assert head.status_code == 200, describe_response(head)
    assert int(head.headers["content-length"]) == layer.size, describe_response(head)

    out = tmp_path / "pulled"
    skopeo("copy", "--src-tls-verify=false", "--preserve-digests", dest, f"oci:{out}:v1")
    pulled = OciLayout(out)
    assert pulled.resolve("v1").digest == image.manifest.digest
    assert pulled.read_blob(layer.digest) == layout.read_blob(layer.digest)


def test_concurrent_pushes_sharing_a_base_layer(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    """Six pushes at once, all uploading the same 4 MiB base layer, into one repository and
    into repositories of their own."""
    base = {"base/blob.bin": random.Random("moorage-shared-base").randbytes(4 * 1024 * 1024)}
    layout = OciLayout(tmp_path / "layout")
    images = []
    for i in range(6):
        image = layout.add_image(image_files(f"concurrent-{i}"), base_files=base, compresslevel=1)
        layout.tag(image.manifest, f"c{i}")
        images.append(image)
    assert len({image.layers[0].digest for image in images}) == 1
    destinations = [
        ("e2e/skopeo/concurrent", f"c{i}") if i % 2 == 0 else (f"e2e/skopeo/concurrent-{i}", "v1")
        for i in range(len(images))
    ]
    skopeo("--version")  # fail here, not in a thread, if skopeo is missing

    with ThreadPoolExecutor(max_workers=len(images)) as pool:
        futures = [
            pool.submit(
                push_layout,
                skopeo,
                layout,
                f"c{i}",
                f"docker://{registry.host}/{repository}:{tag}",
                tmp_path,
                "--preserve-digests",
            )
            for i, (repository, tag) in enumerate(destinations)
        ]
        pushed = [future.result() for future in futures]
    assert pushed == [image.manifest.digest for image in images]

    for image, (repository, tag) in zip(images, destinations, strict=True):
        response = get_manifest(http, repository, tag)
        assert response.status_code == 200, describe_response(response)
        assert sha256_digest(response.content) == image.manifest.digest
        assert_blobs_served(http, repository, layout, image.blob_digests)
    tags = http.get("/v2/e2e/skopeo/concurrent/tags/list")
    assert tags.status_code == 200, describe_response(tags)
    assert sorted(tags.json()["tags"]) == ["c0", "c2", "c4"]
