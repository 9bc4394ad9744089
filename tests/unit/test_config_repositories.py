"""``repositories`` means the same in the access policy, the gc rules and the quotas: a list of
repository globs, or one glob; quotas' old ``repository`` still works, with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from moorage.app import build_quotas
from moorage.auth.policy import parse_policy
from moorage.config import ConfigError, load_settings
from moorage.metadata.usage import Quota


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "moorage.yaml"
    path.write_text(text)
    return load_settings(path)


GC_RULES = """
gc:
  untagged:
    - repositories: ["ci/*", "scratch/*"]
      older_than: 7d
    - repositories: "team/tmp"
      older_than: 1d
  retention:
    - repositories: ["ci/*", "nightly/*"]
      keep_last: 3
"""


def test_gc_rules_take_a_list_of_patterns_or_one(tmp_path: Path) -> None:
    settings = _load(tmp_path, GC_RULES)
    gc = settings.gc  # type: ignore[attr-defined]
    assert gc.untagged[0].repositories == ("ci/*", "scratch/*")
    assert gc.untagged[1].repositories == ("team/tmp",)
    assert gc.untagged_age("scratch/x") == 7 * 86400  # the second pattern of the first rule
    assert gc.untagged_age("team/tmp") == 86400
    assert gc.untagged_age("team/app") is None
    assert gc.retention[0].repositories == ("ci/*", "nightly/*")


def test_gc_rules_name_a_bad_pattern(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gc.retention.0.repositories: .*'Nightly/\*'"):
        _load(tmp_path, "gc:\n  retention:\n    - {repositories: [a, 'Nightly/*'], keep_last: 1}\n")


def test_quotas_take_repositories_each_pattern_its_own_limits(tmp_path: Path) -> None:
    settings = _load(tmp_path, "quotas:\n  - {repositories: ['a/*', 'b/*'], max_tags: 2}\n")
    assert build_quotas(settings).quotas == (  # type: ignore[arg-type]
        Quota("a/*", None, 2),
        Quota("b/*", None, 2),
    )


def test_the_old_quota_key_works_with_a_warning_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="moorage.config"):
        settings = _load(tmp_path, "quotas:\n  - {repository: 'team/*', max_bytes: 1kB}\n")
    assert build_quotas(settings).quotas == (Quota("team/*", 1000),)  # type: ignore[arg-type]
    assert "quotas: `repository` is deprecated, write `repositories`" in caplog.text


def test_the_old_and_the_new_quota_key_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"quotas\.0: Value error, give `repositories` only"):
        _load(tmp_path, "quotas:\n  - {repository: a, repositories: [b], max_tags: 1}\n")


def test_the_policy_also_takes_a_single_pattern(tmp_path: Path) -> None:
    text = b"rules:\n  - {repositories: 'team/*', authenticated: true, actions: [pull]}\n"
    policy = parse_policy(text, tmp_path / "policy.yaml")
    assert policy.rules[0].repositories == ("team/*",)


def test_webhook_endpoints_take_the_same_patterns(tmp_path: Path) -> None:
    from moorage.events.endpoints import Endpoint

    settings = _load(
        tmp_path,
        "events:\n  endpoints:\n    - {url: 'https://ci.example.com/', repositories: [a/*, b]}\n",
    )
    patterns = settings.events.endpoints[0].repositories  # type: ignore[attr-defined]
    assert patterns == ("a/*", "b")
    endpoint = Endpoint("ci", "https://ci.example.com/", repositories=patterns)
    assert endpoint.wants("dev.moorage.manifest.pushed", "b")
    assert not endpoint.wants("dev.moorage.manifest.pushed", "c")
