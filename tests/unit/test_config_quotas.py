"""The ``quotas`` settings: sizes with units, patterns, and messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.app import build_quotas
from moorage.config import ConfigError, load_settings
from moorage.metadata.usage import Quota


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "moorage.yaml"
    path.write_text(text)
    return load_settings(path)


def test_quotas_with_units_in_order(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        quotas=[
            {"repositories": ["big/*"], "max_bytes": "1.5 GiB"},
            {"repositories": "team/*", "max_bytes": "500MB", "max_tags": 50},
            {"repositories": ["*"], "max_bytes": 1024},
            {"repositories": ["tags/only"], "max_tags": 0},
        ],
    )
    assert build_quotas(settings).quotas == (
        Quota("big/*", 1536 * 1024**2),
        Quota("team/*", 500 * 1000**2, 50),
        Quota("*", 1024),
        Quota("tags/only", None, 0),
    )
    assert load_settings(None).quotas == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "{repositories: ['a', 'Team/*'], max_bytes: 1}",
            "quotas.0.repositories: Value error, repository pattern 'Team/*'",
        ),
        (
            "{repositories: [], max_bytes: 1}",
            "quotas.0.repositories: Value should have at least 1 item",
        ),
        (
            "{repository: 'a', max_bytes: 10 parsecs}",
            "quotas.0.max_bytes: Value error, '10 parsecs'",
        ),
        ("{repository: 'a', max_bytes: -1}", "quotas.0.max_bytes: Input should be greater"),
        ("{repository: 'a', max_tags: -1}", "quotas.0.max_tags: Input should be greater"),
        ("{repository: 'a'}", "quotas.0: Value error, a quota needs max_bytes, max_tags or both"),
        ("{max_bytes: 1}", "quotas.0.repositories: Field required"),
        ("{repository: 'a', max_bytes: 1, max_byte: 2}", "quotas.0.max_byte: Extra inputs"),
    ],
)
def test_bad_quotas_name_the_key(tmp_path: Path, entry: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f"quotas:\n  - {entry}\n")
    assert message in str(info.value)
