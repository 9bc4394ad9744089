"""Reading manifests and configs for display: odd values are shown, never refused."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from moorage.oci import mediatypes
from moorage.oci.inspect import Platform, index_platforms, view_config, view_manifest

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def test_image_manifest_view() -> None:
    payload = json.dumps(
        {
            "config": {"mediaType": "c", "digest": "sha256:1", "size": 10},
            "layers": [{"mediaType": "l", "digest": "sha256:2", "size": 5}],
            "annotations": {"a": "b", "n": 1},
            "artifactType": "x/y",
        }
    ).encode()
    view = view_manifest(payload, mediatypes.OCI_MANIFEST)
    assert not view.is_index
    assert view.content_size == 15
    assert view.annotations == {"a": "b", "n": "1"}
    assert view.artifact_type == "x/y"


def test_index_platforms_in_order() -> None:
    payload = json.dumps(
        {
            "manifests": [
                {
                    "digest": "sha256:1",
                    "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"},
                },
                {"digest": "sha256:2"},
                {"digest": "sha256:3", "platform": {"os": "windows", "architecture": "amd64"}},
            ]
        }
    ).encode()
    assert index_platforms(payload) == (
        Platform("linux", "arm64", "v8"),
        Platform("windows", "amd64"),
    )
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"


def test_config_view_with_odd_types() -> None:
    payload = json.dumps(
        {
            "os": "linux",
            "architecture": "amd64",
            "config": {
                "Env": "A=1",
                "Cmd": ["x", 2],
                "Labels": {"k": ["v"]},
                "ExposedPorts": {"80/tcp": {}},
            },
            "history": [{"created_by": "RUN x", "empty_layer": True}, "junk"],
        }
    ).encode()
    config = view_config(payload)
    assert config is not None
    assert config.env == ("A=1",)
    assert config.cmd == ("x", "2")
    assert config.labels == {"k": '["v"]'}
    assert config.exposed_ports == ("80/tcp",)
    assert [h.created_by for h in config.history] == ["RUN x"]
    assert config.history[0].empty_layer


def test_non_object_config_is_none() -> None:
    assert view_config(b"[]") is None
    assert view_config(b"not json") is None
    assert view_config(b"{}") is None


@given(json_values)
def test_any_json_is_viewable(value: object) -> None:
    payload = json.dumps(
        {"config": value, "layers": value, "manifests": value, "history": value}
    ).encode()
    view_manifest(payload, mediatypes.OCI_INDEX)
    view_config(payload)
