"""The events and audit settings: defaults, and each bad value named."""

from __future__ import annotations

import pytest

from moorage.config import ConfigError, load_settings


def test_events_are_off_without_endpoints_and_audit_is_on() -> None:
    settings = load_settings()
    assert not settings.events.recording
    assert settings.audit.enabled and settings.audit.retention == 90 * 86400
    endpoint = {"url": "https://hooks.example.com/x", "timeout": "5s"}
    settings = load_settings(events={"endpoints": [endpoint]}, audit={"retention": "30d"})
    assert settings.events.recording and settings.events.endpoints[0].timeout == 5
    assert settings.events.endpoints[0].key == "https://hooks.example.com/x"
    assert settings.audit.retention == 30 * 86400


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"url": "ftp://x/"}, "http:// or https://"),
        ({"url": "http://x/", "types": ["dev.moorage.nope"]}, "unknown event types"),
        ({"url": "http://x/", "allow_networks": ["10.0.0.0/33"]}, "allow_networks"),
        ({"url": "http://x/", "repositories": "team/[a]"}, "repositories"),
    ],
)
def test_bad_endpoints_are_named(endpoint: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings(events={"endpoints": [endpoint]})


def test_two_endpoints_under_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="distinct names"):
        load_settings(events={"endpoints": [{"url": "http://a/"}, {"url": "http://a/"}]})
