"""Reading a stored manifest and its image config for people: what a UI shows of an image.

Pure, no I/O. The registry validated the manifest's structure when it was pushed, but every
value shown here (labels, annotations, history lines, even media types) is still untrusted text
that the caller must escape. Fields of an unexpected type are shown as their JSON text rather
than refused: a page about a strange image is more useful than an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from moorage.oci import mediatypes

# A config larger than this is not parsed for display (real ones are a few KiB; the cap keeps
# a hostile one from costing a page view more than a bounded read).
CONFIG_DISPLAY_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os or "?", self.architecture or "?"]
        if self.variant:
            parts.append(self.variant)
        return "/".join(parts)


@dataclass(frozen=True, slots=True)
class DescriptorView:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ManifestView:
    """A manifest as shown: an image's config and layers, or an index's manifests."""

    media_type: str
    is_index: bool
    config: DescriptorView | None
    layers: tuple[DescriptorView, ...]
    manifests: tuple[DescriptorView, ...]
    subject: DescriptorView | None
    artifact_type: str | None
    annotations: dict[str, str]

    @property
    def platforms(self) -> tuple[Platform, ...]:
        return tuple(m.platform for m in self.manifests if m.platform is not None)

    @property
    def content_size(self) -> int:
        """The bytes an image's config and layers take (0 for an index)."""
        config = self.config.size if self.config is not None else 0
        return config + sum(layer.size for layer in self.layers)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    created: str
    created_by: str
    comment: str
    empty_layer: bool


@dataclass(frozen=True, slots=True)
class ConfigView:
    """The parts of an image config (OCI or Docker) a person looks at."""

    platform: Platform
    created: str
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    working_dir: str
    user: str
    exposed_ports: tuple[str, ...]
    labels: dict[str, str]
    history: tuple[HistoryEntry, ...]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(_text(item) for item in value)
    if value is None:
        return ()
    return (_text(value),)


def _mapping(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {_text(key): _text(item) for key, item in value.items()}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _platform(value: Any) -> Platform | None:
    if not isinstance(value, dict):
        return None
    return Platform(
        _text(value.get("os")), _text(value.get("architecture")), _text(value.get("variant"))
    )


def _descriptor(value: Any) -> DescriptorView:
    data = value if isinstance(value, dict) else {}
    artifact_type = data.get("artifactType")
    return DescriptorView(
        media_type=_text(data.get("mediaType")),
        digest=_text(data.get("digest")),
        size=_int(data.get("size")),
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        platform=_platform(data.get("platform")),
        annotations=_mapping(data.get("annotations")),
    )


def _descriptors(value: Any) -> tuple[DescriptorView, ...]:
    return tuple(_descriptor(item) for item in value) if isinstance(value, list) else ()


def _object(payload: bytes) -> dict[str, Any]:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def view_manifest(payload: bytes, media_type: str) -> ManifestView:
    """What the stored manifest ``payload`` (of ``media_type``) holds."""
    body = _object(payload)
    config = body.get("config")
    subject = body.get("subject")
    artifact_type = body.get("artifactType")
    return ManifestView(
        media_type=media_type,
        is_index=media_type in mediatypes.INDEXES,
        config=_descriptor(config) if isinstance(config, dict) else None,
        layers=_descriptors(body.get("layers")),
        manifests=_descriptors(body.get("manifests")),
        subject=_descriptor(subject) if isinstance(subject, dict) else None,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations=_mapping(body.get("annotations")),
    )


def index_platforms(payload: bytes) -> tuple[Platform, ...]:
    """The platforms an index's manifests name (for a tag list), in the index's order."""
    return view_manifest(payload, mediatypes.OCI_INDEX).platforms


def view_config(payload: bytes) -> ConfigView | None:
    """The image config ``payload``, or None when it is not a JSON object (an artifact's
    config, often the empty ``{}`` descriptor's, says nothing about a platform)."""
    body = _object(payload)
    if not body:
        return None
    runtime = body.get("config")
    runtime = runtime if isinstance(runtime, dict) else {}
    ports = runtime.get("ExposedPorts")
    history = body.get("history")
    return ConfigView(
        platform=Platform(
            _text(body.get("os")), _text(body.get("architecture")), _text(body.get("variant"))
        ),
        created=_text(body.get("created")),
        env=_strings(runtime.get("Env")),
        entrypoint=_strings(runtime.get("Entrypoint")),
        cmd=_strings(runtime.get("Cmd")),
        working_dir=_text(runtime.get("WorkingDir")),
        user=_text(runtime.get("User")),
        exposed_ports=tuple(sorted(_text(p) for p in ports)) if isinstance(ports, dict) else (),
        labels=_mapping(runtime.get("Labels")),
        history=tuple(
            HistoryEntry(
                created=_text(entry.get("created")),
                created_by=_text(entry.get("created_by")),
                comment=_text(entry.get("comment")),
                empty_layer=entry.get("empty_layer") is True,
            )
            for entry in (history if isinstance(history, list) else [])
            if isinstance(entry, dict)
        ),
    )
