"""Manifest parsing (OCI image manifest/index, Docker schema 2 and lists) and media types."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from moorage.errors import ErrorCode, RegistryError
from moorage.oci import mediatypes
from moorage.oci.digest import Digest
from moorage.oci.manifest import Descriptor, ParsedManifest, parse_manifest

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def digest_of(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def descriptor(media_type: str, seed: str, size: int = 10, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest_of(seed), "size": size, **extra}


def image(media_type: str | None = mediatypes.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "config": descriptor(OCI_CONFIG, "config", 2),
        "layers": [descriptor(OCI_LAYER, "layer0", 100), descriptor(OCI_LAYER, "layer1", 200)],
    }
    if media_type is not None:
        body["mediaType"] = media_type
    body.update(extra)
    return body


def index(media_type: str | None = mediatypes.OCI_INDEX, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "manifests": [
            descriptor(mediatypes.OCI_MANIFEST, "amd64", 500, platform={"os": "linux"}),
            descriptor(mediatypes.OCI_MANIFEST, "arm64", 501),
        ],
    }
    if media_type is not None:
        body["mediaType"] = media_type
    body.update(extra)
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def assert_invalid(payload: bytes, content_type: str | None = None) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_manifest(payload, content_type)
    assert info.value.code is ErrorCode.MANIFEST_INVALID
    assert info.value.status == 400
    return info.value


# --- media types -------------------------------------------------------------------------------


def test_media_type_sets() -> None:
    assert {mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST} == mediatypes.IMAGE_MANIFESTS
    assert {mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST} == mediatypes.INDEXES
    assert mediatypes.MANIFESTS == mediatypes.IMAGE_MANIFESTS | mediatypes.INDEXES
    assert not mediatypes.IMAGE_MANIFESTS & mediatypes.INDEXES
    assert not mediatypes.SCHEMA1 & mediatypes.MANIFESTS
    assert mediatypes.OCI_EMPTY_CONFIG not in mediatypes.MANIFESTS
    for media_type in mediatypes.MANIFESTS | mediatypes.SCHEMA1:
        assert media_type == media_type.lower()
        assert media_type.startswith("application/vnd.")


# --- valid manifests ---------------------------------------------------------------------------


def test_oci_image_manifest() -> None:
    parsed = parse_manifest(encode(image()), mediatypes.OCI_MANIFEST)
    assert parsed.media_type == mediatypes.OCI_MANIFEST
    assert not parsed.is_index
    assert [str(b.digest) for b in parsed.blobs] == [
        digest_of("config"),
        digest_of("layer0"),
        digest_of("layer1"),
    ]
    assert [b.size for b in parsed.blobs] == [2, 100, 200]
    assert parsed.blobs[0].media_type == OCI_CONFIG
    assert parsed.children == ()
    assert parsed.subject is None
    assert parsed.artifact_type == OCI_CONFIG  # defaults to config.mediaType
    assert parsed.annotations == {}


def test_image_manifest_with_artifact_type_subject_and_annotations() -> None:
    body = image(
        artifactType="application/vnd.example.sbom",
        subject=descriptor(mediatypes.OCI_MANIFEST, "subject", 42),
        annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        config=descriptor(mediatypes.OCI_EMPTY_CONFIG, "empty", 2),
        layers=[descriptor("application/spdx+json", "sbom", 7, annotations={"k": "v"})],
    )
    parsed = parse_manifest(encode(body), None)
    assert parsed.artifact_type == "application/vnd.example.sbom"
    assert parsed.subject == Descriptor(
        mediatypes.OCI_MANIFEST, Digest.parse(digest_of("subject")), 42
    )
    assert parsed.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert parsed.blobs[1].annotations == {"k": "v"}
    assert len(parsed.blobs) == 2


def test_manifest_with_no_layers_is_valid() -> None:
    parsed = parse_manifest(encode(image(layers=[])), None)
    assert [b.media_type for b in parsed.blobs] == [OCI_CONFIG]


def test_oci_index() -> None:
    body = index(
        artifactType="application/vnd.example",
        subject=descriptor(mediatypes.OCI_INDEX, "subject", 9),
        blobs=[descriptor("application/octet-stream", "extra", 3)],
        annotations={"a": "b"},
    )
    parsed = parse_manifest(encode(body), mediatypes.OCI_INDEX)
    assert parsed.media_type == mediatypes.OCI_INDEX
    assert parsed.is_index
    assert [str(c.digest) for c in parsed.children] == [digest_of("amd64"), digest_of("arm64")]
    assert [c.size for c in parsed.children] == [500, 501]
    assert parsed.blobs == ()  # "blobs" is no field of an index: ignored
    assert parsed.subject is not None
    assert str(parsed.subject.digest) == digest_of("subject")
    assert parsed.artifact_type == "application/vnd.example"
    assert parsed.annotations == {"a": "b"}


def test_index_artifact_type_has_no_default() -> None:
    parsed = parse_manifest(encode(index()), None)
    assert parsed.artifact_type is None
    assert parsed.blobs == ()


def test_empty_index_is_valid() -> None:
    parsed = parse_manifest(encode(index(manifests=[])), None)
    assert parsed.children == ()


def test_docker_schema2_manifest() -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, "config", 1469),
        "layers": [descriptor(DOCKER_LAYER, "layer", 2811969)],
    }
    parsed = parse_manifest(encode(body), mediatypes.DOCKER_MANIFEST)
    assert parsed.media_type == mediatypes.DOCKER_MANIFEST
    assert not parsed.is_index
    assert [b.media_type for b in parsed.blobs] == [DOCKER_CONFIG, DOCKER_LAYER]
    assert parsed.artifact_type == DOCKER_CONFIG


def test_docker_manifest_list() -> None:
    body = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST_LIST,
        "manifests": [
            descriptor(mediatypes.DOCKER_MANIFEST, "amd64", 528, platform={"os": "linux"})
        ],
    }
    parsed = parse_manifest(encode(body), mediatypes.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == mediatypes.DOCKER_MANIFEST_LIST
    assert parsed.is_index
    assert [c.media_type for c in parsed.children] == [mediatypes.DOCKER_MANIFEST]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # mediaType absent: the Content-Type decides ...
        (image(None), mediatypes.DOCKER_MANIFEST, mediatypes.DOCKER_MANIFEST),
        (index(None), mediatypes.DOCKER_MANIFEST_LIST, mediatypes.DOCKER_MANIFEST_LIST),
        # ... with parameters and any case
        (
            image(None),
            "Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8",
            mediatypes.OCI_MANIFEST,
        ),
        # ... and when neither says, the shape does
        (image(None), None, mediatypes.OCI_MANIFEST),
        (index(None), None, mediatypes.OCI_INDEX),
        (image(None), "application/json", mediatypes.OCI_MANIFEST),
        (index(None), "", mediatypes.OCI_INDEX),
        # a generic Content-Type never contradicts the declared mediaType
        (image(mediatypes.DOCKER_MANIFEST), "application/json", mediatypes.DOCKER_MANIFEST),
        (image(mediatypes.DOCKER_MANIFEST), None, mediatypes.DOCKER_MANIFEST),
    ],
)
def test_media_type_resolution(
    body: dict[str, Any], content_type: str | None, expected: str
) -> None:
    assert parse_manifest(encode(body), content_type).media_type == expected


def test_parsing_does_not_depend_on_key_order_or_whitespace() -> None:
    body = image(subject=descriptor(mediatypes.OCI_MANIFEST, "s", 1))
    compact = parse_manifest(json.dumps(body, separators=(",", ":")).encode(), None)
    pretty = parse_manifest(json.dumps(body, indent=3, sort_keys=True).encode(), None)
    assert compact == pretty


# --- refused manifests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "content_type"),
    [
        (mediatypes.OCI_MANIFEST, mediatypes.OCI_INDEX),
        (mediatypes.OCI_MANIFEST, mediatypes.DOCKER_MANIFEST),
        (mediatypes.DOCKER_MANIFEST, mediatypes.OCI_MANIFEST),
        (mediatypes.OCI_INDEX, mediatypes.DOCKER_MANIFEST_LIST),
        (mediatypes.DOCKER_MANIFEST_LIST, mediatypes.OCI_MANIFEST),
    ],
)
def test_content_type_mediatype_mismatch_is_refused(declared: str, content_type: str) -> None:
    body = index(declared) if declared in mediatypes.INDEXES else image(declared)
    error = assert_invalid(encode(body), content_type)
    assert "Content-Type" in error.message
    assert error.detail == {"contentType": content_type, "mediaType": declared}


@pytest.mark.parametrize(
    "body",
    [
        {**index(), "layers": []},
        {**index(), "config": descriptor(OCI_CONFIG, "c")},
        {**image(), "manifests": []},
        {**image(None), "manifests": []},
        {**image(mediatypes.OCI_INDEX), "manifests": []},
    ],
)
def test_both_image_and_index_is_refused(body: dict[str, Any]) -> None:
    error = assert_invalid(encode(body), None)
    assert "both" in error.message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ({"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": []}, None),
        ({"schemaVersion": 1}, mediatypes.DOCKER_SCHEMA1_SIGNED),
        ({"schemaVersion": 2, "mediaType": mediatypes.DOCKER_SCHEMA1}, None),
        ({"schemaVersion": 2, "mediaType": mediatypes.DOCKER_SCHEMA1_SIGNED}, None),
        (image(None), mediatypes.DOCKER_SCHEMA1),
        (image(None), mediatypes.DOCKER_SCHEMA1_SIGNED + "; charset=utf-8"),
    ],
)
def test_schema1_is_refused_with_a_clear_message(
    body: dict[str, Any], content_type: str | None
) -> None:
    error = assert_invalid(encode(body), content_type)
    assert "schema 1" in error.message


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"null", "JSON object"),
        (b'"manifest"', "JSON object"),
        (encode({"config": {}, "layers": []}), "schemaVersion"),
        (encode(image(schemaVersion=3)), "schemaVersion"),
        (encode(image(schemaVersion="2")), "schemaVersion"),
        (encode(image(mediaType=5)), "mediaType must be a string"),
        (encode(image("application/vnd.oci.image.config.v1+json")), "unsupported manifest media"),
        (encode(image("application/json")), "unsupported manifest media"),
        (encode(image(mediatypes.OCI_MANIFEST.upper())), "unsupported manifest media"),
        (encode(image(artifactType=1)), "artifactType"),
        (encode(image(annotations=["a"])), "annotations"),
        (encode(image(annotations={"a": 1})), "annotations"),
        (encode({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX}), "manifests list"),
        (encode(index(manifests={})), "manifests must be a list"),
        (encode(index(manifests=["sha256:abc"])), "manifests[0] must be a descriptor"),
        (encode(image(config=None)), "config must be a descriptor"),
        (encode({"schemaVersion": 2, "layers": []}), "config descriptor"),
        (encode({"schemaVersion": 2, "config": descriptor(OCI_CONFIG, "c")}), "layers list"),
        (encode(image(layers="x")), "layers must be a list"),
        (encode(image(subject="sha256:abc")), "subject must be a descriptor"),
    ],
)
def test_malformed_manifests_are_refused(payload: bytes, fragment: str) -> None:
    assert fragment in assert_invalid(payload).message


@pytest.mark.parametrize(
    ("patch", "fragment"),
    [
        ({"mediaType": None}, "config.mediaType"),
        ({"mediaType": ""}, "config.mediaType"),
        ({"mediaType": 3}, "config.mediaType"),
        ({"digest": None}, "config.digest must be a string"),
        ({"digest": 7}, "config.digest must be a string"),
        ({"digest": "sha256:abc"}, "config.digest"),
        ({"digest": "md5:d41d8cd98f00b204e9800998ecf8427e"}, "config.digest"),
        ({"digest": "sha256:" + "A" * 64}, "config.digest"),
        ({"size": None}, "config.size"),
        ({"size": -1}, "config.size"),
        ({"size": 1.0}, "config.size"),
        ({"size": "1"}, "config.size"),
        ({"size": True}, "config.size"),
        ({"annotations": {"k": None}}, "config.annotations"),
    ],
)
def test_malformed_descriptors_are_refused(patch: dict[str, Any], fragment: str) -> None:
    body = image()
    body["config"] = {**body["config"], **patch}
    assert fragment in assert_invalid(encode(body)).message


def test_non_string_descriptor_artifact_type_is_ignored() -> None:
    body = image()
    body["layers"][0]["artifactType"] = 5
    assert parse_manifest(encode(body), None).blobs[1].artifact_type is None


def test_deeply_nested_json_is_refused() -> None:
    assert_invalid(b"[" * 100_000)


def test_huge_integer_is_refused() -> None:
    assert_invalid(b'{"schemaVersion": ' + b"1" * 5000 + b"}")


@pytest.mark.parametrize("body", [index(manifests=None), image(layers=None)])
def test_null_manifests_or_layers_are_refused(body: dict[str, Any]) -> None:
    assert_invalid(encode(body))


def _with_duplicate(body: dict[str, Any], path: tuple[str | int, ...], key: str) -> bytes:
    """``body`` encoded with ``key`` written a second time (first, with a different value)
    in the object at ``path``."""
    target: Any = body
    for step in path:
        target = target[step]
    marker = "__duplicate_marker__"
    target[marker] = "first"
    text = encode(body).decode()
    return text.replace(f'"{marker}": "first"', f'"{key}": "first"').encode()


@pytest.mark.parametrize(
    ("make", "path", "key"),
    [
        (image, (), "mediaType"),
        (image, (), "layers"),
        (image, (), "config"),
        (image, ("config",), "digest"),
        (image, ("layers", 1), "size"),
        (lambda: image(annotations={"a": "b"}), ("annotations",), "a"),
        (index, (), "manifests"),
        (index, ("manifests", 0, "platform"), "os"),
        (lambda: image(unknownField={"x": 1}), ("unknownField",), "x"),
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(
    make: Any, path: tuple[str | int, ...], key: str
) -> None:
    payload = _with_duplicate(make(), path, key)
    assert payload.count(f'"{key}"'.encode()) >= 2
    error = assert_invalid(payload)
    assert error.detail == {"key": key}
    assert "duplicate" in error.message


def test_keys_that_differ_only_in_escaping_are_duplicates() -> None:
    payload = encode(image()).replace(b'"schemaVersion"', b'"layers": [], "schemaVersion"', 1)
    assert_invalid(payload)
    escaped = payload.replace(b'"layers": []', b'"l\\u0061yers": []', 1)
    assert b"\\u0061" in escaped
    assert assert_invalid(escaped).detail == {"key": "layers"}


# --- properties --------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
content_types = (
    st.none()
    | st.sampled_from([*sorted(mediatypes.MANIFESTS | mediatypes.SCHEMA1), "application/json", ""])
    | st.text(max_size=30)
)


def check_outcome(payload: bytes, content_type: str | None) -> ParsedManifest | None:
    try:
        parsed = parse_manifest(payload, content_type)
    except RegistryError as error:
        assert error.code is ErrorCode.MANIFEST_INVALID
        assert error.message
        return None
    assert parsed.media_type in mediatypes.MANIFESTS
    assert parsed.is_index == (parsed.media_type in mediatypes.INDEXES)
    if not parsed.is_index:
        assert parsed.children == ()
        assert len(parsed.blobs) >= 1  # the config
    return parsed


@PROPERTY
@given(payload=st.binary(max_size=300), content_type=content_types)
@example(b'\xef\xbb\xbf{"schemaVersion": 2, "manifests": []}', None)
@example(b'{"schemaVersion": 2, "manifests": [], "x": NaN}', None)
@example(b'{"schemaVersion": 2, "manifests": [], "x": "\\ud800"}', None)
def test_arbitrary_bytes_parse_or_raise_manifest_invalid(
    payload: bytes, content_type: str | None
) -> None:
    check_outcome(payload, content_type)


# Objects built from the keys the parser looks at, with (often nearly) right values.
digests = st.sampled_from([digest_of("a"), "sha512:" + "0" * 128, "sha256:bad", "", "x:y"])
descriptor_values = st.fixed_dictionaries(
    {},
    optional={
        "mediaType": st.sampled_from([OCI_LAYER, "", mediatypes.OCI_MANIFEST]) | json_scalars,
        "digest": digests | json_scalars,
        "size": st.integers(-2, 2**64) | json_scalars,
        "artifactType": json_scalars,
        "annotations": st.dictionaries(
            st.text(max_size=5), st.text(max_size=5) | json_scalars, max_size=2
        )
        | json_scalars,
    },
)
field_values = descriptor_values | st.lists(descriptor_values, max_size=3) | json_values
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([1, 2, 3, 2.0, True, "2", None]),
        "mediaType": st.sampled_from(sorted(mediatypes.MANIFESTS | mediatypes.SCHEMA1))
        | json_scalars,
        "config": field_values,
        "layers": field_values,
        "manifests": field_values,
        "blobs": field_values,
        "subject": field_values,
        "artifactType": json_scalars,
        "annotations": json_values,
    },
)


@PROPERTY
@given(body=manifest_like | json_values, content_type=content_types)
def test_arbitrary_json_parses_or_raises_manifest_invalid(
    body: Any, content_type: str | None
) -> None:
    check_outcome(json.dumps(body).encode(), content_type)


valid_descriptors = st.builds(
    lambda media_type, data, size: descriptor(media_type, data, size),
    st.sampled_from([OCI_LAYER, DOCKER_LAYER, "application/octet-stream"]),
    st.text(max_size=8),
    st.integers(0, 2**53),
)


@PROPERTY
@given(
    image_type=st.sampled_from(sorted(mediatypes.IMAGE_MANIFESTS)),
    declare=st.booleans(),
    send_header=st.booleans(),
    config=valid_descriptors,
    layers=st.lists(valid_descriptors, max_size=5),
    subject=st.none() | valid_descriptors,
    artifact_type=st.none() | st.sampled_from(["application/vnd.example+json"]),
)
def test_generated_image_manifests_parse(
    image_type: str,
    declare: bool,
    send_header: bool,
    config: dict[str, Any],
    layers: list[dict[str, Any]],
    subject: dict[str, Any] | None,
    artifact_type: str | None,
) -> None:
    body: dict[str, Any] = {"schemaVersion": 2, "config": config, "layers": layers}
    if declare:
        body["mediaType"] = image_type
    if subject is not None:
        body["subject"] = subject
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    header = image_type if send_header else None
    parsed = parse_manifest(encode(body), header)
    assert parsed.media_type == (image_type if declare or send_header else mediatypes.OCI_MANIFEST)
    assert [(b.media_type, str(b.digest), b.size) for b in parsed.blobs] == [
        (d["mediaType"], d["digest"], d["size"]) for d in [config, *layers]
    ]
    assert parsed.children == ()
    assert parsed.artifact_type == (artifact_type or config["mediaType"])
    if subject is None:
        assert parsed.subject is None
    else:
        assert parsed.subject is not None
        assert str(parsed.subject.digest) == subject["digest"]


@PROPERTY
@given(
    index_type=st.sampled_from(sorted(mediatypes.INDEXES)),
    declare=st.booleans(),
    send_header=st.booleans(),
    children=st.lists(valid_descriptors, max_size=5),
    blobs=st.none() | st.lists(valid_descriptors, max_size=3),
    subject=st.none() | valid_descriptors,
)
def test_generated_indexes_parse(
    index_type: str,
    declare: bool,
    send_header: bool,
    children: list[dict[str, Any]],
    blobs: list[dict[str, Any]] | None,
    subject: dict[str, Any] | None,
) -> None:
    body: dict[str, Any] = {"schemaVersion": 2, "manifests": children}
    if declare:
        body["mediaType"] = index_type
    if blobs is not None:
        body["blobs"] = blobs
    if subject is not None:
        body["subject"] = subject
    parsed = parse_manifest(encode(body), index_type if send_header else None)
    assert parsed.media_type == (index_type if declare or send_header else mediatypes.OCI_INDEX)
    assert parsed.is_index
    assert [str(c.digest) for c in parsed.children] == [d["digest"] for d in children]
    assert parsed.blobs == ()  # "blobs" is no field of an index: ignored, never required
    assert (parsed.subject is None) == (subject is None)
    assert parsed.artifact_type is None


@PROPERTY
@given(
    declared=st.sampled_from(sorted(mediatypes.MANIFESTS)),
    header=st.sampled_from(sorted(mediatypes.MANIFESTS)),
)
def test_any_declared_vs_header_mismatch_is_refused(declared: str, header: str) -> None:
    body = index(declared) if declared in mediatypes.INDEXES else image(declared)
    if declared == header:
        assert parse_manifest(encode(body), header).media_type == declared
    else:
        assert "Content-Type" in assert_invalid(encode(body), header).message
