"""The policy file re-read when it changes, at most every check interval; a bad file keeps the
previous policy; the gate forgets decisions made under an old policy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from moorage.auth.access import Access
from moorage.auth.gate import AccessGate, Decision
from moorage.auth.identity import Identity, Via
from moorage.auth.policy import PolicyError
from moorage.auth.policy_reload import ReloadingPolicyAuthorizer
from tests.unit.manual_clock import ManualClock as Clock

PUSH = [Access("repository", "team/app", frozenset({"push"}))]
BOB = Identity("bob", Via.PASSWORD)


def rules(actions: str) -> str:
    return f"rules:\n  - repositories: ['team/*']\n    users: [bob]\n    actions: [{actions}]\n"


@pytest.fixture
def clock() -> Clock:
    return Clock(100.0)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(rules("pull, push"))
    return path


def gate_over(authorizer: ReloadingPolicyAuthorizer) -> AccessGate:
    return AccessGate(True, (), authorizer, "moorage")


def test_a_change_is_seen_after_the_check_interval_and_not_before(
    policy_file: Path, clock: Clock
) -> None:
    authorizer = ReloadingPolicyAuthorizer(policy_file, 2.0, clock)
    gate = gate_over(authorizer)
    assert gate.decide(BOB, PUSH) is Decision.ALLOW
    policy_file.write_text(rules("pull"))
    clock.now += 1.0
    assert gate.decide(BOB, PUSH) is Decision.ALLOW  # not looked at yet
    clock.now += 1.0
    assert gate.decide(BOB, PUSH) is Decision.DENY  # memoized decision dropped
    assert authorizer.generation == 1


def test_an_unchanged_file_keeps_the_generation(policy_file: Path, clock: Clock) -> None:
    authorizer = ReloadingPolicyAuthorizer(policy_file, 2.0, clock)
    policy_file.write_text(rules("pull, push"))  # rewritten, same bytes
    clock.now += 5
    assert authorizer.generation == 0


@pytest.mark.parametrize("damage", ["invalid", "not yaml", "removed"])
def test_a_bad_file_keeps_the_previous_policy_and_logs_once(
    policy_file: Path, clock: Clock, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    authorizer = ReloadingPolicyAuthorizer(policy_file, 2.0, clock)
    gate = gate_over(authorizer)
    if damage == "invalid":
        policy_file.write_text(rules("fly"))
    elif damage == "not yaml":
        policy_file.write_text("rules: [")
    else:
        policy_file.unlink()
    with caplog.at_level(logging.ERROR, "moorage.auth"):
        for _ in range(3):
            clock.now += 3
            assert gate.decide(BOB, PUSH) is Decision.ALLOW
    assert caplog.text.count("policy file invalid, keeping the previous policy") == 1
    policy_file.write_text(rules("pull"))  # fixed: taken
    clock.now += 3
    assert gate.decide(BOB, PUSH) is Decision.DENY


def test_an_invalid_file_at_start_is_an_error(policy_file: Path) -> None:
    policy_file.write_text(rules("fly"))
    with pytest.raises(PolicyError, match=r"rules\.0\.actions"):
        ReloadingPolicyAuthorizer(policy_file)
