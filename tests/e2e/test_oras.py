"""The oras Python SDK: artifacts, artifacts with a ``subject``, and the referrers API.

Distribution 2.8 has no referrers API, so the referrers tests fail against it by design.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support import (
    EMPTY_JSON,
    MT_OCI_EMPTY,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    Descriptor,
    OciLayout,
    RegistryServer,
    Tool,
    canonical_json,
    describe_response,
    get_manifest,
    import_oras,
    media_type,
    new_image_layout,
    push_layout,
    sha256_digest,
)

pytestmark = pytest.mark.e2e

# Artifact A is pushed by the SDK's own push(): its type is its config's media type.
CONFIG_TYPE = "application/vnd.moorage.e2e.signature.config+json"
SIGNATURE_LAYER_TYPE = "application/vnd.moorage.e2e.signature.v1+json"
# Artifact B is a manifest written here, with an explicit artifactType and the empty config.
SBOM_TYPE = "application/vnd.moorage.e2e.sbom.v1+json"
SBOM_LAYER_TYPE = "application/spdx+json"


def oras_client(registry: RegistryServer) -> Any:
    return import_oras("oras.client").OrasClient(hostname=registry.host, insecure=True)


def describe_requests_response(response: Any) -> str:
    request = response.request
    headers = "\n".join(f"  {k}: {v}" for k, v in response.headers.items())
    return (
        f"{request.method if request else '?'} {response.url} -> HTTP {response.status_code}\n"
        f"{headers}\n  body: {response.text[:2000]!r}"
    )


def test_push_and_pull_artifact(
    registry: RegistryServer, http: httpx.Client, tmp_path: Path
) -> None:
    client = oras_client(registry)
    payload = tmp_path / "notes.txt"
    payload.write_bytes(b"an artifact, not an image\n" * 100)
    target = f"{registry.host}/e2e/oras/plain:notes"

    # Chunked upload: POST, PATCH..., PUT.
    response = client.push(
        target=target,
        files=[f"{payload}:text/plain"],
        disable_path_validation=True,
        do_chunked=True,
        chunk_size=1000,
        manifest_annotations={"org.moorage.e2e": "plain"},
    )
    assert response.status_code == 201, describe_requests_response(response)

    manifest_response = get_manifest(http, "e2e/oras/plain", "notes")
    assert manifest_response.status_code == 200, describe_response(manifest_response)
    assert media_type(manifest_response) == MT_OCI_MANIFEST
    manifest = manifest_response.json()
    [layer] = manifest["layers"]
    assert layer["digest"] == sha256_digest(payload.read_bytes())
    assert layer["mediaType"] == "text/plain"
    assert manifest["annotations"] == {"org.moorage.e2e": "plain"}

    outdir = tmp_path / "pulled"
    files = client.pull(target=target, outdir=str(outdir))
    assert [Path(f).name for f in files] == ["notes.txt"]
    assert (outdir / "notes.txt").read_bytes() == payload.read_bytes()
    assert "notes" in client.get_tags(f"{registry.host}/e2e/oras/plain")


@dataclass(frozen=True)
class Referrers:
    repository: str
    subject: Descriptor
    signature: Descriptor  # pushed with the SDK's push(); artifactType from config.mediaType
    signature_annotations: dict[str, str]
    sbom: Descriptor  # written here with artifactType and the empty config
    sbom_annotations: dict[str, str]
    sbom_put_headers: dict[str, str]


def push_subject_and_referrers(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path, name: str
) -> Referrers:
    """An image pushed with skopeo, then two artifacts that refer to it, pushed with oras."""
    repository = f"e2e/oras/{name}"
    layout_dir = tmp_path / "layout"
    image = new_image_layout(layout_dir, f"oras-{name}")
    push_layout(
        skopeo,
        OciLayout(layout_dir),
        "v1",
        f"docker://{registry.host}/{repository}:v1",
        tmp_path,
        "--preserve-digests",
    )
    subject = image.manifest.plain()

    client = oras_client(registry)
    subject_arg = import_oras("oras.oci").Subject(
        mediaType=subject.media_type, digest=subject.digest, size=subject.size
    )

    # A: the SDK's push() with a subject and a typed config.
    signature_file = tmp_path / "signature.json"
    signature_file.write_bytes(canonical_json({"signed": subject.digest}))
    config_file = tmp_path / "signature-config.json"
    config_file.write_bytes(canonical_json({"kind": "e2e-signature"}))
    signature_annotations = {"org.moorage.e2e.kind": "signature"}
    response = client.push(
        target=f"{registry.host}/{repository}:signature",
        files=[f"{signature_file}:{SIGNATURE_LAYER_TYPE}"],
        manifest_config=f"{config_file}:{CONFIG_TYPE}",
        manifest_annotations=signature_annotations,
        subject=subject_arg,
        disable_path_validation=True,
    )
    assert response.status_code == 201, describe_requests_response(response)
    stored = get_manifest(http, repository, "signature")
    assert stored.status_code == 200, describe_response(stored)
    assert stored.json()["subject"]["digest"] == subject.digest
    signature = Descriptor(MT_OCI_MANIFEST, sha256_digest(stored.content), len(stored.content))

    # B: a manifest built here (artifactType, empty config), uploaded through the SDK's session.
    container = client.get_container(f"{registry.host}/{repository}:sbom")
    sbom_file = tmp_path / "sbom.spdx.json"
    sbom_file.write_bytes(canonical_json({"spdxVersion": "SPDX-2.3", "name": name}))
    empty_file = tmp_path / "empty.json"
    empty_file.write_bytes(EMPTY_JSON)
    sbom_layer = Descriptor(
        SBOM_LAYER_TYPE,
        sha256_digest(sbom_file.read_bytes()),
        sbom_file.stat().st_size,
        annotations={"org.opencontainers.image.title": "sbom.spdx.json"},
    )
    empty_config = Descriptor(MT_OCI_EMPTY, sha256_digest(EMPTY_JSON), len(EMPTY_JSON))
    for path, descriptor in ((sbom_file, sbom_layer), (empty_file, empty_config)):
        uploaded = client.upload_blob(str(path), container, descriptor.plain().to_json())
        assert uploaded.status_code in (200, 201), describe_requests_response(uploaded)
    sbom_annotations = {
        "org.moorage.e2e.kind": "sbom",
        "org.opencontainers.image.created": "2024-01-01T00:00:00Z",
    }
    sbom_manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "artifactType": SBOM_TYPE,
            "config": empty_config.to_json(),
            "layers": [sbom_layer.to_json()],
            "subject": subject.to_json(),
            "annotations": sbom_annotations,
        }
    )
    put = client.do_request(
        f"{client.prefix}://{container.manifest_url()}",
        "PUT",
        data=sbom_manifest,
        headers={"Content-Type": MT_OCI_MANIFEST},
    )
    assert put.status_code == 201, describe_requests_response(put)
    sbom = Descriptor(MT_OCI_MANIFEST, sha256_digest(sbom_manifest), len(sbom_manifest))
    return Referrers(
        repository=repository,
        subject=subject,
        signature=signature,
        signature_annotations=signature_annotations,
        sbom=sbom,
        sbom_annotations=sbom_annotations,
        sbom_put_headers={k.lower(): v for k, v in put.headers.items()},
    )


def get_referrers(
    http: httpx.Client, repository: str, digest: str, artifact_type: str | None = None
) -> tuple[httpx.Response, dict[str, Any]]:
    params = {"artifactType": artifact_type} if artifact_type is not None else None
    response = http.get(f"/v2/{repository}/referrers/{digest}", params=params)
    assert response.status_code == 200, describe_response(response)
    assert media_type(response) == MT_OCI_INDEX, describe_response(response)
    body: dict[str, Any] = response.json()
    assert body.get("schemaVersion") == 2, describe_response(response)
    assert body.get("mediaType") == MT_OCI_INDEX, describe_response(response)
    return response, body


def by_digest(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["digest"]: entry for entry in body.get("manifests", [])}


def test_manifest_with_subject_answers_oci_subject(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    pushed = push_subject_and_referrers(registry, skopeo, http, tmp_path, "subject-header")
    assert pushed.sbom_put_headers.get("oci-subject") == pushed.subject.digest, (
        f"PUT manifest with a subject must answer OCI-Subject: {pushed.subject.digest}; "
        f"headers were {json.dumps(pushed.sbom_put_headers, indent=1)}"
    )


def test_referrers_lists_artifacts_with_their_types(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    pushed = push_subject_and_referrers(registry, skopeo, http, tmp_path, "referrers")
    response, body = get_referrers(http, pushed.repository, pushed.subject.digest)
    entries = by_digest(body)
    assert set(entries) == {pushed.signature.digest, pushed.sbom.digest}, describe_response(
        response
    )

    signature = entries[pushed.signature.digest]
    assert signature["mediaType"] == MT_OCI_MANIFEST
    assert signature["size"] == pushed.signature.size
    assert signature.get("artifactType") == CONFIG_TYPE  # no artifactType: config.mediaType
    assert signature.get("annotations") == pushed.signature_annotations

    sbom = entries[pushed.sbom.digest]
    assert sbom["mediaType"] == MT_OCI_MANIFEST
    assert sbom["size"] == pushed.sbom.size
    assert sbom.get("artifactType") == SBOM_TYPE
    assert sbom.get("annotations") == pushed.sbom_annotations

    # The referrers are ordinary manifests too: fetchable by digest, byte for byte.
    for descriptor in (pushed.signature, pushed.sbom):
        fetched = get_manifest(http, pushed.repository, descriptor.digest)
        assert fetched.status_code == 200, describe_response(fetched)
        assert sha256_digest(fetched.content) == descriptor.digest


def test_referrers_filtered_by_artifact_type(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    pushed = push_subject_and_referrers(registry, skopeo, http, tmp_path, "filtered")

    response, body = get_referrers(http, pushed.repository, pushed.subject.digest, SBOM_TYPE)
    assert list(by_digest(body)) == [pushed.sbom.digest], describe_response(response)
    assert by_digest(body)[pushed.sbom.digest]["artifactType"] == SBOM_TYPE
    assert response.headers.get("oci-filters-applied") == "artifactType", describe_response(
        response
    )

    response, body = get_referrers(http, pushed.repository, pushed.subject.digest, CONFIG_TYPE)
    assert list(by_digest(body)) == [pushed.signature.digest], describe_response(response)
    assert response.headers.get("oci-filters-applied") == "artifactType"

    response, body = get_referrers(
        http, pushed.repository, pushed.subject.digest, "application/vnd.moorage.e2e.none"
    )
    assert body["manifests"] == [], describe_response(response)


def test_referrers_of_a_digest_without_referrers_is_empty(
    registry: RegistryServer, skopeo: Tool, http: httpx.Client, tmp_path: Path
) -> None:
    pushed = push_subject_and_referrers(registry, skopeo, http, tmp_path, "empty")
    # The sbom artifact exists but nothing refers to it; an unknown digest has no referrers
    # either. Both answer 200 with an empty index (never 404).
    for digest in (pushed.sbom.digest, sha256_digest(b"nothing refers to this")):
        response, body = get_referrers(http, pushed.repository, digest)
        assert body["manifests"] == [], describe_response(response)
