"""Usage, quotas and repository delete against a real ``moorage serve`` driven by skopeo, with
the operator's commands (``moorage usage``, ``moorage repo delete``) run beside it."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import (
    BuiltImage,
    OciLayout,
    RegistryServer,
    Tool,
    describe_response,
    moorage_executable,
    push_layout,
    registry_kind,
)

pytestmark = pytest.mark.e2e

QUOTA = 64 * 1024
BASE = {"etc/os-release": b"moorage e2e shared base\n" * 50}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    if registry_kind() != "moorage":
        pytest.fail("quotas and repository delete are Moorage's own; unset E2E_REGISTRY_CMD")
    config = tmp_path / "moorage.yaml"
    config.write_text(f"quotas:\n  - repositories: ['e2e/quota/*']\n    max_bytes: {QUOTA}\n")
    with RegistryServer(
        "moorage", tmp_path / "registry", extra_args=["--config", str(config)]
    ) as s:
        yield s


def moorage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOORAGE_")}
    return subprocess.run(
        [moorage_executable(), *args], capture_output=True, text=True, timeout=60, env=env
    )


def stored_bytes(image: BuiltImage) -> int:
    """What ``moorage usage`` counts for one image alone: its blobs and its manifest."""
    return image.config.size + sum(layer.size for layer in image.layers) + image.manifest.size


def tags(http: httpx.Client, repository: str) -> Any:
    response = http.get(f"/v2/{repository}/tags/list")
    return response.json().get("tags") if response.status_code == 200 else response.status_code


def test_quota_usage_and_repository_delete(server: RegistryServer, tmp_path: Path) -> None:
    skopeo = Tool("skopeo", registry=server)
    layout = OciLayout(tmp_path / "layout")
    images: dict[str, BuiltImage] = {}
    for label in ("one", "two", "small"):
        images[label] = layout.add_image({"app/label": label.encode()}, base_files=BASE)
        layout.tag(images[label].manifest, label)
    noise = random.Random(7).randbytes(2 * QUOTA)  # incompressible: the layer stays this big
    images["big"] = layout.add_image({"app/noise": noise}, base_files=BASE)
    layout.tag(images["big"].manifest, "big")

    def push(label: str, dest: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        if check:
            push_layout(skopeo, layout, label, f"docker://{server.host}/{dest}", tmp_path)
            return subprocess.CompletedProcess([], 0)
        return skopeo(
            "copy",
            "--dest-tls-verify=false",
            "--preserve-digests",
            layout.reference(label),
            f"docker://{server.host}/{dest}",
            check=False,
        )

    with server.client() as http:
        # A push over quota is refused with the quota and the usage named, and leaves no tag.
        push("small", "e2e/quota/app:v1")
        refused = push("big", "e2e/quota/app:v2", check=False)
        assert refused.returncode != 0
        assert "quota exceeded" in refused.stderr, refused.stderr
        assert "'e2e/quota/*'" in refused.stderr and f"({QUOTA} bytes)" in refused.stderr
        assert tags(http, "e2e/quota/app") == ["v1"]
        big = http.get(f"/v2/e2e/quota/app/manifests/{images['big'].manifest.digest}")
        assert big.status_code == 404, describe_response(big)

        # Usage after known pushes: the base layer is shared by every image.
        push("one", "e2e/usage/one:v1")
        push("two", "e2e/usage/two:v1")
        push("one", "e2e/usage/two:also-one")
        result = moorage("usage", "e2e/usage/*", "--json", "--data-dir", str(server.data_dir))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        usage = {r["name"]: r for r in report["repositories"]}
        assert list(usage) == ["e2e/usage/one", "e2e/usage/two"]
        one, two = images["one"], images["two"]
        base_layer = one.layers[0]
        assert base_layer == two.layers[0]
        assert usage["e2e/usage/one"]["bytes"] == stored_bytes(one)
        both = stored_bytes(one) + stored_bytes(two) - base_layer.size
        assert usage["e2e/usage/two"]["bytes"] == both
        assert usage["e2e/usage/two"]["tags"] == 2
        assert report["namespaces"] == [
            {
                "name": "e2e/usage",
                "repositories": 2,
                "manifest_bytes": 2 * one.manifest.size + two.manifest.size,
                "blobs": 5,  # one config, two config, base, one's layer, two's layer
                "blob_bytes": both - one.manifest.size - two.manifest.size,
                "bytes": both + one.manifest.size,
            }
        ]
        text = moorage("usage", "--data-dir", str(server.data_dir))
        assert text.returncode == 0 and "e2e/quota/app" in text.stdout
        assert "once per namespace" in text.stdout

        # Delete a repository while the server runs: the other, sharing its blobs, still pulls.
        result = moorage(
            "repo", "delete", "e2e/usage/one", "--yes", "--data-dir", str(server.data_dir)
        )
        assert result.returncode == 0, result.stderr
        assert "deleted e2e/usage/one: 1 tags, 1 manifests" in result.stdout
        assert tags(http, "e2e/usage/one") == 404
        catalog = http.get("/v2/_catalog").json()["repositories"]
        assert "e2e/usage/one" not in catalog and "e2e/usage/two" in catalog
        gone = http.get(f"/v2/e2e/usage/one/manifests/{one.manifest.digest}")
        assert gone.status_code == 404
        for tag, image in (("v1", two), ("also-one", one)):
            out = tmp_path / f"pulled-{tag}"
            skopeo(
                "copy",
                "--src-tls-verify=false",
                "--preserve-digests",
                f"docker://{server.host}/e2e/usage/two:{tag}",
                f"oci:{out}:{tag}",
            )
            pulled = OciLayout(out)
            assert pulled.resolve(tag).digest == image.manifest.digest
            assert pulled.corrupt_blobs() == []
            assert pulled.image_blobs(image.manifest.digest) == image.blob_digests
