"""Session cookies and CSRF tokens: signed, expiring, bound to the user's password."""

from __future__ import annotations

from moorage.auth.access import parse_scope
from moorage.auth.identity import ANONYMOUS, Identity, Via
from moorage.web.session import SessionSigner, derive_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def signer(
    credentials: dict[str, str], clock: Clock, key: bytes = b"k", live: frozenset[str] = frozenset()
) -> SessionSigner:
    return SessionSigner(
        derive_key(key), 3600, credentials.get, token_live=live.__contains__, clock=clock
    )


def test_a_session_round_trips_with_its_limits() -> None:
    clock = Clock()
    sessions = signer({"ann": "hash1"}, clock, live=frozenset({"t1"}))
    password = Identity("ann", Via.PASSWORD)
    cookie = sessions.issue(password)
    assert cookie is not None
    assert sessions.identity(cookie) == password
    limited = Identity("ann", Via.API_TOKEN, (parse_scope("repository:team/*:pull"),))
    cookie = sessions.issue(limited, "t1")
    assert cookie is not None
    assert sessions.identity(cookie) == limited


def test_a_token_session_ends_with_its_token() -> None:
    clock = Clock()
    live = {"t1"}
    sessions = SessionSigner(derive_key(b"k"), 3600, {"ann": "h"}.get, live.__contains__, clock)
    cookie = sessions.issue(Identity("ann", Via.API_TOKEN, ()), "t1")
    assert sessions.identity(cookie) is not None
    live.clear()
    assert sessions.identity(cookie) is None
    # A token sign-in must name its token, and a password one must not.
    assert sessions.issue(Identity("ann", Via.API_TOKEN, ())) is None
    assert sessions.issue(Identity("ann", Via.PASSWORD), "t1") is None


def test_a_session_expires() -> None:
    clock = Clock()
    sessions = signer({"ann": "hash1"}, clock)
    cookie = sessions.issue(Identity("ann", Via.PASSWORD))
    clock.now += 3599
    assert sessions.identity(cookie) is not None
    clock.now += 1
    assert sessions.identity(cookie) is None


def test_a_password_change_or_removal_ends_the_session() -> None:
    clock = Clock()
    credentials = {"ann": "hash1"}
    sessions = signer(credentials, clock)
    cookie = sessions.issue(Identity("ann", Via.PASSWORD))
    credentials["ann"] = "hash2"
    assert sessions.identity(cookie) is None
    del credentials["ann"]
    assert sessions.identity(cookie) is None


def test_another_key_or_a_changed_byte_is_refused() -> None:
    clock = Clock()
    cookie = signer({"ann": "h"}, clock).issue(Identity("ann", Via.PASSWORD))
    assert cookie is not None
    assert signer({"ann": "h"}, clock, key=b"other").identity(cookie) is None
    sessions = signer({"ann": "h"}, clock)
    for bad in (
        "",
        ".",
        "x.y",
        cookie[:-1],
        "A" + cookie[1:],
        cookie + "A",
        cookie.replace(".", ""),
    ):
        assert sessions.identity(bad) is None


def test_no_session_for_anonymous_or_bearer_or_unknown_users() -> None:
    sessions = signer({"ann": "h"}, Clock())
    assert sessions.issue(ANONYMOUS) is None
    assert sessions.issue(Identity("ann", Via.BEARER)) is None
    assert sessions.issue(Identity("bob", Via.PASSWORD)) is None


def test_csrf_tokens_are_bound_to_their_nonce_and_key() -> None:
    sessions = signer({}, Clock())
    nonce = sessions.new_csrf_nonce()
    token = sessions.csrf_token(nonce)
    assert sessions.csrf_valid(nonce, token)
    assert not sessions.csrf_valid(sessions.new_csrf_nonce(), token)
    assert not sessions.csrf_valid(nonce, None)
    assert not sessions.csrf_valid(None, token)
    assert not signer({}, Clock(), key=b"other").csrf_valid(nonce, token)
