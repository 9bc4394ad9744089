"""The AccessGate's decisions, with fakes standing in for htpasswd, the policy and the JWTs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from moorage.auth.access import CATALOG_ACCESS, Access, covers, parse_scope, repository
from moorage.auth.gate import AccessGate, Decision, RefreshClaims, RefreshRefused
from moorage.auth.identity import ANONYMOUS, Identity, Via

ALICE = Identity("alice", Via.PASSWORD)


class Passwords:
    def authenticate_password(self, username: str, password: str) -> Identity | None:
        return Identity(username, Via.PASSWORD) if password == f"{username}-pw" else None

    def recall(self, username: str, password: str) -> Identity | None:
        return None


class Rules:
    """alice: pull+push on team/*; anonymous: pull on public/*."""

    generation = 0

    def grant(self, identity: Identity, requested: Sequence[Access]) -> list[Access]:
        granted = []
        for access in requested:
            allowed: set[str] = set()
            if access.name.startswith("public/"):
                allowed.add("pull")
            if identity.name == "alice" and access.name.startswith("team/"):
                allowed |= {"pull", "push"}
            if access == CATALOG_ACCESS and not identity.anonymous:
                allowed.add("*")
            if identity.limit is not None:
                allowed &= {
                    a for held in identity.limit if held.name == access.name for a in held.actions
                }
            if access.actions & allowed:
                granted.append(Access(access.type, access.name, access.actions & allowed))
        return granted

    def may_overwrite_tag(self, identity: Identity, repository: str) -> bool:
        return True

    def pull_filter(self, identity: Identity) -> Callable[[str], bool]:
        pull = frozenset({"pull"})
        return lambda name: bool(self.grant(identity, [Access("repository", name, pull)]))

    def pull_prefixes(self, identity: Identity) -> tuple[str, ...] | None:
        return None


@dataclass
class Issued:
    token: str
    expires_in: int
    issued_at: str


class FakeIssuer:
    def __init__(self) -> None:
        self.issued: list[tuple[str | None, str, list[Access]]] = []

    def issue(self, subject: str | None, audience: str, access: Sequence[Access]) -> Issued:
        self.issued.append((subject, audience, list(access)))
        return Issued(f"jwt-{len(self.issued)}", 300, "2026-11-28T00:00:00Z")

    def issue_refresh(self, subject: str, audience: str, client_id: str, credential: str) -> str:
        return f"refresh:{subject}:{client_id}:{credential}"

    def verify_refresh(self, token: str, audience: str) -> RefreshClaims:
        kind, subject, client_id, credential = token.split(":")
        if kind != "refresh":
            raise ValueError("bad")
        return RefreshClaims(subject, client_id, self.credential_binding(credential))

    def credential_binding(self, credential: str) -> str:
        return f"tag-{credential}"


# Each user's stored password hash, as the htpasswd file has it now.
CREDENTIALS = {"alice": "hash-1"}


def gate(enabled: bool = True) -> tuple[AccessGate, FakeIssuer]:
    issuer = FakeIssuer()
    g = AccessGate(enabled, [Passwords()], Rules(), "moorage", issuer, None, CREDENTIALS.get)
    return g, issuer


def test_auth_off_allows_everything_even_anonymous_deletes() -> None:
    g, _ = gate(enabled=False)
    assert g.decide(ANONYMOUS, [repository("team/app", "delete")]) is Decision.ALLOW
    assert g.decide(ANONYMOUS, []) is Decision.ALLOW


def test_v2_root_challenges_anonymous_even_with_public_repositories() -> None:
    g, _ = gate()
    assert g.decide(ANONYMOUS, []) is Decision.CHALLENGE
    assert g.decide(ALICE, []) is Decision.ALLOW


def test_anonymous_pulls_public_and_is_challenged_elsewhere() -> None:
    g, _ = gate()
    assert g.decide(ANONYMOUS, [repository("public/x", "pull")]) is Decision.ALLOW
    assert g.decide(ANONYMOUS, [repository("public/x", "push")]) is Decision.CHALLENGE
    assert g.decide(ANONYMOUS, [repository("team/app", "pull")]) is Decision.CHALLENGE


def test_authenticated_user_is_denied_what_the_policy_does_not_give() -> None:
    g, _ = gate()
    assert g.decide(ALICE, [repository("team/app", "push")]) is Decision.ALLOW
    assert g.decide(ALICE, [repository("team/app", "delete")]) is Decision.DENY
    assert g.decide(ALICE, [repository("other/app", "pull")]) is Decision.DENY


def test_bearer_holds_only_its_access_claim() -> None:
    g, _ = gate()
    token = Identity("alice", Via.BEARER, (repository("team/app", "pull"),))
    assert g.decide(token, [repository("team/app", "pull")]) is Decision.ALLOW
    # alice could get push with a new token: tell the client to fetch one.
    assert g.decide(token, [repository("team/app", "push")]) is Decision.INSUFFICIENT_SCOPE
    # A token for team/app is no good on team/other without a new token either.
    assert g.decide(token, [repository("team/other", "pull")]) is Decision.INSUFFICIENT_SCOPE
    # What no token could give her is a 403.
    assert g.decide(token, [repository("team/app", "delete")]) is Decision.DENY
    anonymous_token = Identity(None, Via.BEARER, ())
    assert g.decide(anonymous_token, [repository("team/app", "pull")]) is Decision.CHALLENGE
    assert g.decide(anonymous_token, []) is Decision.CHALLENGE


def test_issue_grants_the_intersection_and_drops_malformed_scopes() -> None:
    g, issuer = gate()
    requested = [
        parse_scope("repository:team/app:pull,push,delete"),
        parse_scope("repository:team/*:push"),  # a glob is a literal (invalid) name
        parse_scope("repository:localhost:5000/team/app:push"),
        parse_scope("registry:catalog:*"),
        parse_scope("registry:other:*"),
    ]
    grant = g.issue(ALICE, requested)
    assert grant.granted == [repository("team/app", "pull", "push"), CATALOG_ACCESS]
    assert issuer.issued[-1] == ("alice", "moorage", grant.granted)
    assert grant.refresh_token is None


def test_issue_to_anonymous_is_an_empty_grant_not_an_error() -> None:
    g, _ = gate()
    grant = g.issue(ANONYMOUS, [parse_scope("repository:team/app:pull")], offline=True)
    assert grant.granted == []
    assert grant.refresh_token is None


def test_refresh_tokens_only_for_password_logins() -> None:
    g, _ = gate()
    assert g.issue(ALICE, [], offline=True).refresh_token == "refresh:alice::hash-1"
    robot = Identity("alice", Via.API_TOKEN, (repository("team/app", "pull"),))
    assert g.issue(robot, [], offline=True).refresh_token is None


def test_refresh_reissues_for_the_subject_and_refuses_garbage() -> None:
    g, _ = gate()
    grant = g.refresh("refresh:alice::hash-1", [parse_scope("repository:team/app:push")])
    assert covers(grant.granted, repository("team/app", "push"))
    assert grant.refresh_token == "refresh:alice::hash-1"
    with pytest.raises(RefreshRefused):
        g.refresh("forged", [])


@pytest.mark.parametrize(
    ("token", "client_id", "why"),
    [
        ("refresh:alice::hash-0", "", "the password changed since"),
        ("refresh:bob::hash-1", "", "the user is gone"),
        ("refresh:alice:docker:hash-1", "", "issued to another client"),
        ("refresh:alice::hash-1", "podman", "asked for by another client"),
    ],
)
def test_refresh_is_refused(token: str, client_id: str, why: str) -> None:
    g, _ = gate()
    with pytest.raises(RefreshRefused):
        g.refresh(token, [], client_id=client_id)


def test_login_tries_each_authenticator() -> None:
    g, _ = gate()
    assert g.login("alice", "alice-pw") == ALICE
    assert g.login("alice", "wrong") is None


def test_pull_filter_judges_a_bearer_by_its_subject() -> None:
    g, _ = gate()
    assert g.pull_filter(ALICE)("team/app")
    assert not g.pull_filter(ALICE)("other/app")
    assert g.pull_filter(ANONYMOUS)("public/x")
    assert g.pull_filter(Identity("alice", Via.BEARER, (CATALOG_ACCESS,)))("team/app")


def test_refresh_refused_once_the_user_is_gone() -> None:
    issuer = FakeIssuer()
    g = AccessGate(
        True,
        [Passwords()],
        Rules(),
        "moorage",
        issuer,
        credential_of=lambda n: None if n == "alice" else "$2y$05$hash",
    )
    with pytest.raises(RefreshRefused):
        g.refresh("refresh:alice", [])
