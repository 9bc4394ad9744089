"""API tokens: created once, stored hashed, accepted only for their user while live."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select

from moorage.auth.access import parse_scope, repository
from moorage.auth.api_tokens import (
    ApiTokenAuthenticator,
    ApiTokenError,
    ApiTokenStore,
    api_tokens,
    looks_like_token,
    token_id,
)
from moorage.auth.identity import Identity, Via
from moorage.auth.policy import PolicyAuthorizer
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import make_engine

SCOPES = [parse_scope("repository:team/*:pull,push")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'moorage.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> ApiTokenStore:
    # No cache: each check reads the database, so what it says is what the row says.
    return ApiTokenStore(engine, cache_seconds=0, clock=clock)


@pytest.fixture
def auth(store: ApiTokenStore) -> ApiTokenAuthenticator:
    return ApiTokenAuthenticator(store)


def later(clock: Clock, **delta: float) -> datetime:
    return datetime.fromtimestamp(clock.now, UTC) + timedelta(**delta)


def test_migration_creates_the_table_on_a_fresh_database(engine: Engine) -> None:
    inspector = inspect(engine)
    columns = {c["name"] for c in inspector.get_columns("api_tokens")}
    assert columns == {
        "id",
        "username",
        "description",
        "secret_sha256",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
    }
    assert [i["column_names"] for i in inspector.get_indexes("api_tokens")] == [["username"]]
    upgrade(engine)  # a second run is a no-op


def test_a_live_token_authenticates_its_user_limited_to_its_scopes(
    store: ApiTokenStore, auth: ApiTokenAuthenticator, clock: Clock
) -> None:
    info, secret = store.create("robot", SCOPES, later(clock, days=30), "ci")
    assert secret.startswith(f"moor_{info.id}_")
    assert looks_like_token(secret)
    assert auth.authenticate_password("robot", secret) == Identity(
        "robot", Via.API_TOKEN, tuple(SCOPES)
    )


def test_recall_answers_only_from_the_cache(engine: Engine, clock: Clock) -> None:
    store = ApiTokenStore(engine, cache_seconds=60, clock=clock)
    auth = ApiTokenAuthenticator(store)
    _, secret = store.create("robot", SCOPES, later(clock, days=1), "ci")
    assert auth.recall("robot", secret) is None
    assert auth.authenticate_password("robot", secret) is not None
    assert auth.recall("robot", secret) == Identity("robot", Via.API_TOKEN, tuple(SCOPES))
    assert auth.recall("other", secret) is None
    clock.now += 2 * 86400
    assert auth.recall("robot", secret) is None


def test_the_identity_is_limited_by_the_policy(
    store: ApiTokenStore, auth: ApiTokenAuthenticator
) -> None:
    _, secret = store.create("robot", SCOPES, None)
    identity = auth.authenticate_password("robot", secret)
    assert identity is not None
    authz = PolicyAuthorizer()  # every logged-in user may do everything
    wanted = [repository("team/app", "pull", "push", "delete"), repository("other", "pull")]
    assert authz.grant(identity, wanted) == [repository("team/app", "pull", "push")]


def test_another_users_token_is_refused(store: ApiTokenStore, auth: ApiTokenAuthenticator) -> None:
    _, secret = store.create("robot", SCOPES, None)
    assert auth.authenticate_password("admin", secret) is None
    assert auth.authenticate_password("Robot", secret) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # last character changed
        lambda s: s[:5] + "0" * 16 + s[21:],  # someone else's (unknown) id
        lambda s: s + "x",  # too long
        lambda s: s[:-1],  # too short
        lambda s: s.replace("moor_", "mooR_"),
        lambda s: "",
    ],
)
def test_a_tampered_secret_is_refused(
    store: ApiTokenStore, auth: ApiTokenAuthenticator, tamper: Callable[[str], str]
) -> None:
    _, secret = store.create("robot", SCOPES, None)
    assert auth.authenticate_password("robot", tamper(secret)) is None


def test_a_token_with_another_tokens_id_is_refused(
    store: ApiTokenStore, auth: ApiTokenAuthenticator
) -> None:
    first, _ = store.create("robot", SCOPES, None)
    _, second = store.create("robot", SCOPES, None)
    forged = f"moor_{first.id}_{second.split('_', 2)[2]}"
    assert auth.authenticate_password("robot", forged) is None


def test_an_expired_token_is_refused(
    store: ApiTokenStore, auth: ApiTokenAuthenticator, clock: Clock
) -> None:
    _, secret = store.create("robot", SCOPES, later(clock, hours=1))
    clock.now += 3599
    assert auth.authenticate_password("robot", secret) is not None
    clock.now += 1
    assert auth.authenticate_password("robot", secret) is None


def test_expiry_is_checked_even_for_a_cached_token(engine: Engine, clock: Clock) -> None:
    store = ApiTokenStore(engine, cache_seconds=3600, clock=clock)
    _, secret = store.create("robot", SCOPES, later(clock, hours=1))
    assert store.verify(secret) is not None
    clock.now += 3600
    assert store.verify(secret) is None


def test_a_revoked_token_is_refused(store: ApiTokenStore, auth: ApiTokenAuthenticator) -> None:
    info, secret = store.create("robot", SCOPES, None)
    assert store.revoke(info.id)
    assert auth.authenticate_password("robot", secret) is None
    assert not store.revoke(info.id)  # already revoked
    assert not store.revoke("0" * 16)  # no such token


def test_revoking_through_the_store_forgets_a_cached_token(engine: Engine) -> None:
    store = ApiTokenStore(engine, cache_seconds=3600)
    info, secret = store.create("robot", SCOPES, None)
    assert store.verify(secret) is not None
    store.revoke(info.id)
    assert store.verify(secret) is None


def test_a_revocation_elsewhere_is_seen_after_the_cache_time(engine: Engine) -> None:
    server = ApiTokenStore(engine, cache_seconds=0.05)
    cli = ApiTokenStore(engine)
    info, secret = cli.create("robot", SCOPES, None)
    assert server.verify(secret) is not None
    cli.revoke(info.id)
    time.sleep(0.06)
    assert server.verify(secret) is None


def test_only_the_hash_is_stored(store: ApiTokenStore, engine: Engine) -> None:
    info, secret = store.create("robot", SCOPES, None, "ci")
    with engine.connect() as conn:
        row = conn.execute(select(api_tokens)).one()._mapping
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    random_part = secret.split("_", 2)[2]
    assert not any(random_part in str(value) for value in row.values())
    assert row["username"] == "robot"
    assert row["scopes"] == "repository:team/*:pull,push"
    assert random_part not in repr(info)


def test_list_never_shows_a_secret_and_filters_by_user(store: ApiTokenStore, clock: Clock) -> None:
    robot, robot_secret = store.create("robot", SCOPES, later(clock, days=1), "ci")
    clock.now += 1
    other, _ = store.create("other", [parse_scope("registry:catalog:*")], None)
    store.revoke(other.id)
    everything = store.list()
    assert [t.id for t in everything] == [robot.id, other.id]
    assert everything[0] == robot
    assert everything[0].description == "ci"
    assert everything[0].expires_at == later(clock, days=1, seconds=-1)
    assert everything[1].revoked_at is not None
    assert [t.id for t in store.list("robot")] == [robot.id]
    assert store.list("nobody") == []
    assert robot_secret not in repr(everything)


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("repository:team/*:pull,admin", "actions must be among"),
        ("repository:team/*:*", "actions must be among"),
        ("repository:Team/[a]:pull", "may hold only"),
        ("registry:catalog:pull", "only repository"),
        ("something:x:pull", "only repository"),
    ],
)
def test_bad_scopes_are_refused(store: ApiTokenStore, scope: str, message: str) -> None:
    with pytest.raises(ApiTokenError, match=message):
        store.create("robot", [parse_scope(scope)], None)
    assert store.list() == []


def test_a_token_needs_scopes_a_user_and_a_future_expiry(
    store: ApiTokenStore, clock: Clock
) -> None:
    with pytest.raises(ApiTokenError, match="at least one scope"):
        store.create("robot", [], None)
    for name in ("", "ro:bot", "ro\nbot"):
        with pytest.raises(ApiTokenError, match="needs a user name"):
            store.create(name, SCOPES, None)
    with pytest.raises(ApiTokenError, match="in the past"):
        store.create("robot", SCOPES, later(clock, seconds=-1))
    with pytest.raises(ApiTokenError, match="time zone"):
        store.create("robot", SCOPES, datetime(2030, 1, 1))
    assert store.list() == []


def test_looks_like_token() -> None:
    assert looks_like_token("moor_0123456789abcdef_" + "A" * 43)
    assert not looks_like_token("hunter2")
    assert not looks_like_token("moor_0123456789abcdef_" + "A" * 42)
    assert not looks_like_token("moor_0123456789ABCDEF_" + "A" * 43)
    assert ApiTokenAuthenticator.looks_like_token("moor_0123456789abcdef_" + "-" * 43)


def test_secrets_are_unique(store: ApiTokenStore) -> None:
    made = [store.create("robot", SCOPES, None) for _ in range(20)]
    assert len({secret for _, secret in made}) == 20
    assert len({info.id for info, _ in made}) == 20


def test_is_live_follows_revocation_and_expiry(engine: Engine, clock: Clock) -> None:
    store = ApiTokenStore(engine, cache_seconds=3600, clock=clock)
    info, secret = store.create("ci", [parse_scope("repository:a/*:pull")], None)
    assert token_id(secret) == info.id
    assert token_id("not-a-token") is None
    assert store.is_live(info.id)
    assert not store.is_live("0" * 16)
    store.revoke(info.id)
    assert not store.is_live(info.id)  # at once through the same store, cache or not
    expiring, _ = store.create(
        "ci",
        [parse_scope("repository:a/*:pull")],
        datetime.fromtimestamp(clock.now + 3600, UTC),
    )
    assert store.is_live(expiring.id)
    clock.now += 3600
    assert not store.is_live(expiring.id)  # expiry is checked on every call, cached or not
