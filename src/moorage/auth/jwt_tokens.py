"""Bearer tokens of the Docker token spec: issuing them (our token service) and verifying them
(the /v2 side, for our tokens and a trusted external issuer's).

An access token is a JWS (header ``alg``, ``typ: JWT``, ``kid``, ``x5c``) whose claims are
``iss, sub, aud, exp, nbf, iat, jti`` and ``access: [{"type", "name", "actions"}]``. A refresh
token (OAuth2 ``refresh_token`` grant, ``offline_token=true``) has its own header ``typ`` and a
``token_use: refresh`` claim and no ``access``: the verifier refuses it as an access token, and
``verify_refresh`` refuses an access token.

Verification never trusts the token to choose how it is checked: the key comes from our trusted
set (by ``kid``, or an ``x5c`` chain leading to a trusted certificate), the algorithm is the one
that key's type implies, and the issuer is the one that key is trusted for.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from moorage.auth.access import Access
from moorage.auth.gate import RefreshClaims
from moorage.auth.identity import Identity, Via
from moorage.auth.signing_key import KeyFileError, PublicKey, SigningKey
from moorage.auth.trusted_issuer import (
    TrustedKey,
    TrustedRoot,
    add_key,
    key_from_x5c,
    load_cert_bundle,
    load_jwks,
)

ACCESS_TYPES = frozenset({"jwt", "at+jwt"})  # header `typ` values of an access token (or none)
REFRESH_TYPE = "moorage-refresh+jwt"
TOKEN_USE = "token_use"  # noqa: S105 - a claim name
REFRESH_USE = "refresh"
# A refresh token's tag of its subject's password hash (see credential_binding).
CREDENTIAL_CLAIM = "crd"

# Longer than any token we or a sane issuer produce (an x5c chain included); refused unparsed.
MAX_TOKEN_LENGTH = 16 * 1024
DEFAULT_LEEWAY_SECONDS = 30
DEFAULT_CACHE_SIZE = 4096

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"

Clock = Callable[[], float]


class InvalidToken(Exception):
    """A token that must not be honoured. ``reason`` is short and safe to show the client; it
    never holds any part of the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str = field(repr=False)
    expires_in: int
    issued_at: str  # RFC 3339, UTC


class TokenIssuer:
    """Signs access and refresh tokens with our key."""

    def __init__(
        self,
        key: SigningKey,
        issuer: str,
        expiry_seconds: int,
        refresh_expiry_seconds: int,
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        clock: Clock = time.time,
        include_x5c: bool = False,
    ) -> None:
        self._key = key
        self._issuer = issuer
        # The `kid` alone identifies our key (distribution looks it up in its rootcertbundle
        # too). The x5c chain adds ~700 bytes that every client sends on every request, so it
        # is only for verifiers that need the certificate in the token.
        self._header: dict[str, object] = {"typ": "JWT", "kid": key.kid}
        if include_x5c:
            self._header["x5c"] = key.x5c
        self._expiry = expiry_seconds
        self._refresh_expiry = refresh_expiry_seconds
        self._leeway = leeway_seconds
        self._clock = clock
        # Secret like the key it comes from, and the same in every worker and after restarts.
        self._binding_key = key.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def issue(self, subject: str | None, audience: str, access: Sequence[Access]) -> IssuedToken:
        """An access token for ``subject`` (None: anonymous) granting exactly ``access``."""
        now = int(self._clock())
        claims = self._registered_claims(subject or "", audience, now, self._expiry)
        claims["access"] = [entry.claim() for entry in access]
        token = jwt.encode(
            claims, self._key.private_key, algorithm=self._key.alg, headers=self._header
        )
        issued_at = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime(RFC3339)
        return IssuedToken(token, self._expiry, issued_at)

    def credential_binding(self, credential: str) -> str:
        """An opaque tag of the subject's stored credential (its password hash), kept in a
        refresh token so that a password change ends it. Keyed with our private key: the
        token is readable by its holder, and an unsalted hash ({SHA}) must not leak."""
        secret = hashlib.sha256(b"moorage refresh binding\0" + self._binding_key).digest()
        tag = hmac.digest(secret, credential.encode(), "sha256")[:16]
        return base64.urlsafe_b64encode(tag).decode().rstrip("=")

    def issue_refresh(self, subject: str, audience: str, client_id: str, credential: str) -> str:
        """A long-lived token that only buys new access tokens for ``subject``, while the
        subject's stored credential is still ``credential``, and for ``client_id`` only."""
        if not subject:
            raise ValueError("refresh tokens are for authenticated subjects only")
        now = int(self._clock())
        claims = self._registered_claims(subject, audience, now, self._refresh_expiry)
        claims[TOKEN_USE] = REFRESH_USE
        claims["client_id"] = client_id
        claims[CREDENTIAL_CLAIM] = self.credential_binding(credential)
        headers = {"typ": REFRESH_TYPE, "kid": self._key.kid}
        return jwt.encode(claims, self._key.private_key, algorithm=self._key.alg, headers=headers)

    def verify_refresh(self, token: str, audience: str) -> RefreshClaims:
        """The claims of a refresh token we issued for ``audience``; raises InvalidToken."""
        header = _header(token)
        if header.get("typ") != REFRESH_TYPE:
            raise InvalidToken("not a refresh token")
        if header.get("kid") != self._key.kid or header.get("alg") != self._key.alg:
            raise InvalidToken("untrusted signing key")
        claims = _claims(_verify_signature(token, self._key.public_key, self._key.alg))
        _check_registered(claims, self._issuer, audience, self._clock(), self._leeway)
        if claims.get(TOKEN_USE) != REFRESH_USE:
            raise InvalidToken("not a refresh token")
        subject = _subject(claims)
        if subject is None:
            raise InvalidToken("refresh token without a subject")
        client_id, binding = claims.get("client_id", ""), claims.get(CREDENTIAL_CLAIM)
        if not isinstance(client_id, str) or not isinstance(binding, str):
            raise InvalidToken("refresh token without its client or credential")
        return RefreshClaims(subject, client_id, binding)

    def _registered_claims(
        self, subject: str, audience: str, now: int, lifetime: int
    ) -> dict[str, Any]:
        return {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "exp": now + lifetime,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
        }


class TokenVerifier:
    """Checks bearer tokens presented to /v2 and turns them into an Identity.

    ``keys`` maps each accepted ``kid`` to the key, algorithm and issuer it stands for;
    ``roots`` are the certificates an ``x5c`` chain may lead to. A verified token is cached
    (by the SHA-256 of its text, until it expires) so its signature is checked once.
    Thread-safe.
    """

    def __init__(
        self,
        keys: Mapping[str, TrustedKey],
        audience: str,
        *,
        roots: Sequence[TrustedRoot] = (),
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Clock = time.time,
    ) -> None:
        self._keys = dict(keys)
        self._roots = tuple(roots)
        self._audience = audience
        self._leeway = leeway_seconds
        self._clock = clock
        self._cache = _VerifiedTokens(cache_size)

    def verify(self, token: str) -> Identity:
        """The bearer's identity, limited to the token's ``access`` claim; raises InvalidToken."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed token")
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest, now)
        if cached is not None:
            return cached
        header = _header(token)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCESS_TYPES):
            raise InvalidToken("not an access token")
        signer = self._signer(header, now)
        if header.get("alg") != signer.alg:
            raise InvalidToken("signing algorithm not allowed")
        claims = _claims(_verify_signature(token, signer.public_key, signer.alg))
        expires = _check_registered(claims, signer.issuer, self._audience, now, self._leeway)
        if TOKEN_USE in claims:
            raise InvalidToken("not an access token")
        identity = Identity(
            _subject(claims), Via.BEARER, _access(claims.get("access")), issued_here=signer.own
        )
        self._cache.put(digest, expires + self._leeway, identity)
        return identity

    def _signer(self, header: Mapping[str, Any], now: float) -> TrustedKey:
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if "x5c" in header:
            moment = datetime.datetime.fromtimestamp(now, datetime.UTC)
            trusted = key_from_x5c(header["x5c"], self._roots, moment)
            if trusted is not None:
                return trusted
        raise InvalidToken("untrusted signing key")


def make_verifier(
    own_key: SigningKey | None,
    own_issuer: str,
    audience: str,
    trusted_issuer: str | None = None,
    trusted_certs_file: Path | None = None,
    trusted_jwks_file: Path | None = None,
    *,
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    clock: Clock = time.time,
) -> TokenVerifier:
    """A verifier for tokens signed by ``own_key`` (as ``own_issuer``) and, when configured, by
    ``trusted_issuer``'s keys from a PEM certificate bundle and/or a JWKS file.

    Raises KeyFileError for an unreadable or unusable file, or when no key would be trusted.
    """
    keys: dict[str, TrustedKey] = {}
    roots: list[TrustedRoot] = []
    if own_key is not None:
        own = TrustedKey(own_key.public_key, own_key.alg, own_issuer, own=True)
        add_key(keys, own_key.kid, own, "token key")
        roots.append(TrustedRoot(own_key.certificate, own_issuer))
    if trusted_issuer is not None:
        if trusted_certs_file is None and trusted_jwks_file is None:
            raise KeyFileError("trusted_issuer needs trusted_certs_file or trusted_jwks_file")
        if trusted_certs_file is not None:
            bundle_keys, bundle_roots = load_cert_bundle(trusted_certs_file, trusted_issuer)
            _merge(keys, bundle_keys, str(trusted_certs_file))
            roots.extend(bundle_roots)
        if trusted_jwks_file is not None:
            _merge(keys, load_jwks(trusted_jwks_file, trusted_issuer), str(trusted_jwks_file))
    if not keys:
        raise KeyFileError("no token signing key is trusted")
    return TokenVerifier(keys, audience, roots=roots, leeway_seconds=leeway_seconds, clock=clock)


def _merge(keys: dict[str, TrustedKey], more: Mapping[str, TrustedKey], source: str) -> None:
    for kid, key in more.items():
        add_key(keys, kid, key, source)


# --- checks shared by access and refresh tokens (pure) --------------------------------------


def _header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed token") from None


def _verify_signature(token: str, key: PublicKey, alg: str) -> bytes:
    """The payload of ``token`` if ``key`` signed it with ``alg`` (and only ``alg``)."""
    try:
        payload: bytes = jwt.PyJWS().decode_complete(token, key, algorithms=[alg])["payload"]
    except jwt.PyJWTError:
        raise InvalidToken("bad signature") from None
    return payload


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError:
        raise InvalidToken("malformed token") from None
    if not isinstance(claims, dict):
        raise InvalidToken("malformed token")
    return claims


def _check_registered(
    claims: Mapping[str, Any], issuer: str, audience: str, now: float, leeway: float
) -> float:
    """Check iss, aud, exp and nbf (all required); return exp."""
    if claims.get("iss") != issuer:
        raise InvalidToken("token issuer not trusted")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or audience not in audiences:
        raise InvalidToken("token is for another service")
    expires = _timestamp(claims, "exp")
    if now > expires + leeway:
        raise InvalidToken("token expired")
    if now + leeway < _timestamp(claims, "nbf"):
        raise InvalidToken("token not valid yet")
    if "iat" in claims:
        _timestamp(claims, "iat")
    return expires


def _timestamp(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidToken(f"token needs a numeric {name} claim")
    return float(value)


def _subject(claims: Mapping[str, Any]) -> str | None:
    subject = claims.get("sub")
    if subject is None or subject == "":
        return None
    if not isinstance(subject, str):
        raise InvalidToken("malformed sub claim")
    return subject


def _access(value: object) -> tuple[Access, ...]:
    """The ``access`` claim as Accesses; absent means no access at all."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidToken("malformed access claim")
    return tuple(_access_entry(entry) for entry in value)


def _access_entry(entry: object) -> Access:
    if not isinstance(entry, dict):
        raise InvalidToken("malformed access claim")
    kind, name, actions = entry.get("type"), entry.get("name"), entry.get("actions")
    if (
        not isinstance(kind, str)
        or not kind
        or not isinstance(name, str)
        or not name
        or not isinstance(actions, list)
        or not all(isinstance(action, str) for action in actions)
    ):
        raise InvalidToken("malformed access claim")
    return Access(kind, name, frozenset(actions))


class _VerifiedTokens:
    """A bounded, thread-safe map from a token's SHA-256 to its Identity, until it expires.

    Keyed by the digest, not the token, so the cache holds no usable credential.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: bytes, now: float) -> Identity | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            valid_until, identity = entry
            if now > valid_until:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return identity

    def put(self, digest: bytes, valid_until: float, identity: Identity) -> None:
        if self._max <= 0:
            return
        with self._lock:
            self._entries[digest] = (valid_until, identity)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
