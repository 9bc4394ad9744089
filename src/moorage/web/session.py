"""Signed session cookies: who signed in to the UI, until when, and with what limits.

A cookie is ``base64url(json) "." base64url(hmac-sha256)``. Nothing secret is inside (a user
name, how they signed in, an API token's scopes, the expiry, and a keyed tag of the user's
password hash, never the hash), but nothing in it can be changed without the key. The key is
derived from the token signing key (or ``ui.session_secret``) so every worker and every node
that shares that key accepts the same cookies, with no session table.

The tag of the stored password hash ends a session when its user's password changes or the
user is removed, as refresh tokens do; a session opened with an API token also ends when that
token is revoked or expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

from moorage.auth.access import parse_scopes
from moorage.auth.identity import Identity, Via

SESSION_COOKIE = "moorage_session"
CSRF_COOKIE = "moorage_csrf"
COOKIE_PATH = "/ui"

_KEY_CONTEXT = b"moorage web ui session key v1"


def derive_key(material: bytes) -> bytes:
    """A key for the UI alone from ``material`` (a private key's bytes, or a configured
    secret), so a session cookie's MAC never doubles as anything the token service signs."""
    return hmac.new(_KEY_CONTEXT, material, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookies and the CSRF tokens of forms."""

    def __init__(
        self,
        key: bytes,
        lifetime_seconds: int,
        credential_of: Callable[[str], str | None],
        token_live: Callable[[str], bool] = lambda _: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.lifetime_seconds = lifetime_seconds
        self._credential_of = credential_of
        # Whether the API token a session was opened with is still live (not revoked/expired).
        self._token_live = token_live
        self._clock = clock

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def _binding(self, user: str) -> str | None:
        credential = self._credential_of(user)
        if credential is None:
            return None
        return _b64(self._mac("credential", credential.encode())[:16])

    def issue(self, identity: Identity, api_token: str | None = None) -> str | None:
        """A cookie value for ``identity``; None when it cannot hold a session (anonymous, a
        bearer token, a user without a stored credential, or an API token sign-in without
        ``api_token``, the id of the token, which the session then lasts no longer than)."""
        if identity.name is None or identity.via not in (Via.PASSWORD, Via.API_TOKEN):
            return None
        if (identity.via is Via.API_TOKEN) != (api_token is not None):
            return None
        binding = self._binding(identity.name)
        if binding is None:
            return None
        body = {
            "u": identity.name,
            "v": identity.via.value,
            "l": None if identity.limit is None else [a.scope() for a in identity.limit],
            "x": self._clock() + self.lifetime_seconds,
            "b": binding,
            "t": api_token,
        }
        payload = json.dumps(body, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac('session', payload))}"

    def identity(self, cookie: str | None) -> Identity | None:
        """Who a session cookie speaks for, or None when it is missing, forged, expired, or
        its user's password changed since."""
        if not cookie:
            return None
        encoded, _, mac = cookie.partition(".")
        try:
            payload = _unb64(encoded)
            valid = hmac.compare_digest(_unb64(mac), self._mac("session", payload))
        except (binascii.Error, ValueError):
            return None
        if not valid:
            return None
        try:
            body = json.loads(payload)
            user, via, limit = body["u"], Via(body["v"]), body["l"]
            expires, binding, api_token = float(body["x"]), body["b"], body["t"]
        except (ValueError, KeyError, TypeError):
            return None
        if expires <= self._clock() or not isinstance(user, str):
            return None
        current = self._binding(user)
        if current is None or not hmac.compare_digest(current, str(binding)):
            return None
        if api_token is not None and not self._token_live(str(api_token)):
            return None  # the token it was opened with was revoked or has expired
        scopes = None if limit is None else tuple(parse_scopes(limit))
        return Identity(user, via, scopes)

    @staticmethod
    def new_csrf_nonce() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, nonce: str) -> str:
        """The token forms carry: a MAC of the browser's CSRF cookie, which another site can
        neither read nor set, so it cannot forge a form post that carries the pair."""
        return _b64(self._mac("csrf", nonce.encode()))

    def csrf_valid(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_token(nonce), token)
