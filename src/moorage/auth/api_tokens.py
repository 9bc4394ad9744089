"""API tokens for CI and robots: long-lived secrets, limited to scopes, used as Basic passwords.

A secret looks like ``moor_<id>_<43 base64url characters>``: the prefix makes a leaked one easy
to recognise (and to scan for), and the id finds its row without a scan. Only the SHA-256 of the
secret is stored: with 256 random bits there is nothing to brute-force, so a slow hash (bcrypt)
would only cost every request time. Rows live in the metadata database (``api_tokens``, created
by migration 0002) and are read and written with SQLAlchemy Core, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    insert,
    select,
    update,
)

from moorage.auth.access import (
    CATALOG,
    REGISTRY,
    REPOSITORY,
    REPOSITORY_ACTIONS,
    Access,
    parse_scopes,
)
from moorage.auth.identity import Identity, Via
from moorage.auth.policy import validate_repository_pattern

PREFIX = "moor_"
_ID_BYTES = 8
_SECRET_BYTES = 32
# moor_ + 16 hex + _ + base64url of 32 bytes (43 characters, no padding; may itself hold `_`).
_TOKEN = re.compile(r"^moor_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$")

metadata = MetaData()

# The user column is `username`, not `user`: USER is reserved in PostgreSQL, where a hand-typed
# `SELECT user FROM api_tokens` would quietly return the database role.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("username", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("secret_sha256", String(64), nullable=False),
    # Scope strings separated by spaces, as in the token spec's `scope` parameter.
    Column("scopes", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Index("ix_api_tokens_username", "username"),
)

_BY_ID = select(api_tokens).where(api_tokens.c.id == bindparam("id"))


class ApiTokenError(ValueError):
    """A token request that cannot be honoured (a bad scope, an expiry in the past)."""


@dataclass(frozen=True, slots=True)
class ApiTokenInfo:
    """Everything about a token except its secret, which is never stored."""

    id: str
    user: str
    scopes: tuple[Access, ...]
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


_DURATION = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(text: str, now: datetime) -> datetime | None:
    """``12h``, ``30d``, ``8w`` after ``now``, or None for ``never``; else ValueError. (The CLI
    and the web UI take the same expiry words.)"""
    if text == "never":
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"expiry {text!r} must be like 12h, 30d, 8w, or never")
    return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def looks_like_token(secret: str) -> bool:
    """True when ``secret`` has the shape of an API token, so the database is worth asking."""
    return _TOKEN.fullmatch(secret) is not None


def token_id(secret: str) -> str | None:
    """The id part of an API token secret (public: it names the row), or None."""
    match = _TOKEN.fullmatch(secret)
    return match.group(1) if match else None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ApiTokenError("expiry must carry a time zone")
    return moment.timestamp()


def _moment(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def validate_scopes(scopes: Sequence[Access]) -> tuple[Access, ...]:
    """``scopes`` if every one is something a token may be limited to, else ApiTokenError:
    ``repository:<pattern>:<pull|push|delete,...>`` or ``registry:catalog:*``."""
    if not scopes:
        raise ApiTokenError("a token needs at least one scope")
    for scope in scopes:
        if scope.type == REGISTRY and scope.name == CATALOG and scope.actions == {"*"}:
            continue
        if scope.type != REPOSITORY:
            raise ApiTokenError(
                f"scope {scope.scope()!r}: only repository:<pattern>:<actions> and "
                "registry:catalog:* are allowed"
            )
        try:
            validate_repository_pattern(scope.name)
        except ValueError as error:
            raise ApiTokenError(f"scope {scope.scope()!r}: {error}") from None
        if not scope.actions or not scope.actions <= REPOSITORY_ACTIONS:
            raise ApiTokenError(
                f"scope {scope.scope()!r}: actions must be among pull, push, delete"
            )
    return tuple(scopes)


def _info(row: Mapping[Any, Any]) -> ApiTokenInfo:
    return ApiTokenInfo(
        id=row["id"],
        user=row["username"],
        scopes=tuple(parse_scopes([row["scopes"]])),
        description=row["description"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        expires_at=_moment(row["expires_at"]),
        revoked_at=_moment(row["revoked_at"]),
    )


@dataclass(frozen=True, slots=True)
class _Verified:
    info: ApiTokenInfo
    until: float  # monotonic time after which the database must be asked again


class ApiTokenStore:
    """Tokens in the ``api_tokens`` table.

    A verified secret is remembered for ``cache_seconds`` (by its SHA-256, never in clear), so
    a client pushing many layers costs one database read, not one per request (measured on
    SQLite: 184 us per verification from the database, 4.6 us from the cache). Revoking through
    this store forgets the token at once; a revocation made elsewhere (the CLI, another worker)
    takes effect within ``cache_seconds``. Expiry is checked on every call. Failed lookups are
    never cached: guessed secrets must not fill memory.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        cache_seconds: float = 30.0,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, _Verified] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Token rows by id, for is_live (a UI session opened with a token); same lifetime.
        self._by_id: OrderedDict[str, _Verified] = OrderedDict()

    def create(
        self,
        user: str,
        scopes: Sequence[Access],
        expires_at: datetime | None,
        description: str = "",
    ) -> tuple[ApiTokenInfo, str]:
        """A new token for ``user`` and its secret, which is not stored and cannot be shown
        again. Raises ApiTokenError for a bad scope or an expiry that has passed."""
        if not user or ":" in user or not user.isprintable():
            # Basic credentials are `user:password`: such a name could never be sent.
            raise ApiTokenError("a token needs a user name without ':' or control characters")
        scopes = validate_scopes(scopes)
        expires = _timestamp(expires_at)
        now = self._clock()
        if expires is not None and expires <= now:
            raise ApiTokenError("expiry is in the past")
        token_id = secrets.token_hex(_ID_BYTES)
        secret = f"{PREFIX}{token_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        row = {
            "id": token_id,
            "username": user,
            "description": description,
            "secret_sha256": _digest(secret),
            "scopes": " ".join(scope.scope() for scope in scopes),
            "created_at": now,
            "expires_at": expires,
            "revoked_at": None,
        }
        with self.engine.begin() as conn:
            conn.execute(insert(api_tokens), row)
        return _info(row), secret

    def list(self, user: str | None = None) -> list[ApiTokenInfo]:
        """Every token (of ``user``, if given), oldest first, revoked and expired ones included."""
        query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if user is not None:
            query = query.where(api_tokens.c.username == user)
        with self.engine.connect() as conn:
            return [_info(row._mapping) for row in conn.execute(query)]

    def revoke(self, token_id: str) -> bool:
        """Revoke the token; False when there is no such token or it was already revoked."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
        with self._cache_lock:
            for key in [k for k, v in self._cache.items() if v.info.id == token_id]:
                del self._cache[key]
            self._by_id.pop(token_id, None)
        return result.rowcount == 1

    def is_live(self, token_id: str) -> bool:
        """Whether the token with this id exists and is neither revoked nor expired. A web UI
        session opened with a token lasts no longer than the token: this is asked on each page,
        so the row is remembered like a verified secret (a revocation made elsewhere shows
        within ``cache_seconds``; one made through this store at once)."""
        with self._cache_lock:
            entry = self._by_id.get(token_id)
            if entry is not None and time.monotonic() >= entry.until:
                del self._by_id[token_id]
                entry = None
        info = entry.info if entry is not None else None
        if info is None:
            with self.engine.connect() as conn:
                row = conn.execute(_BY_ID, {"id": token_id}).one_or_none()
            if row is None:
                return False
            info = _info(row._mapping)
            if self._cache_seconds > 0:
                with self._cache_lock:
                    self._by_id[token_id] = _Verified(info, time.monotonic() + self._cache_seconds)
                    while len(self._by_id) > self._cache_size:
                        self._by_id.popitem(last=False)
        return self._if_live(info) is not None

    def verify(self, secret: str) -> ApiTokenInfo | None:
        """The live (not revoked, not expired) token whose secret this is, or None."""
        match = _TOKEN.fullmatch(secret)
        if match is None:
            return None
        digest = _digest(secret)
        info = self._cached(digest)
        if info is None:
            info = self._lookup(match.group(1), digest)
            if info is None:
                return None
            self._remember(digest, info)
        return self._if_live(info)

    def recall(self, secret: str) -> ApiTokenInfo | None:
        """Like :meth:`verify` but from the cache only (no database read); None if unknown."""
        if _TOKEN.fullmatch(secret) is None:
            return None
        info = self._cached(_digest(secret))
        return None if info is None else self._if_live(info)

    def _if_live(self, info: ApiTokenInfo) -> ApiTokenInfo | None:
        return info if info.is_live(datetime.fromtimestamp(self._clock(), UTC)) else None

    def _lookup(self, token_id: str, digest: str) -> ApiTokenInfo | None:
        with self.engine.connect() as conn:
            row = conn.execute(_BY_ID, {"id": token_id}).one_or_none()
        # Compare even when there is no row, so an unknown id costs what a wrong secret does.
        stored = row.secret_sha256 if row is not None else "0" * 64
        if not hmac.compare_digest(stored.encode(), digest.encode()) or row is None:
            return None
        return _info(row._mapping)

    def _cached(self, digest: str) -> ApiTokenInfo | None:
        with self._cache_lock:
            entry = self._cache.get(digest)
            if entry is None:
                return None
            if time.monotonic() >= entry.until:
                del self._cache[digest]
                return None
            return entry.info

    def _remember(self, digest: str, info: ApiTokenInfo) -> None:
        if self._cache_seconds <= 0:
            return
        with self._cache_lock:
            self._cache[digest] = _Verified(info, time.monotonic() + self._cache_seconds)
            self._cache.move_to_end(digest)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)


class ApiTokenAuthenticator:
    """The :class:`~moorage.auth.port.Authenticator` for API tokens sent as Basic passwords."""

    looks_like_token = staticmethod(looks_like_token)

    def __init__(
        self, store: ApiTokenStore, user_exists: Callable[[str], bool] = lambda _: True
    ) -> None:
        self.store = store
        # A user removed from the htpasswd file loses their tokens with their password.
        self.user_exists = user_exists

    def authenticate_password(self, username: str, password: str) -> Identity | None:
        """The token's user, limited to its scopes, when ``password`` is a live token of
        ``username``; otherwise None (another user's token proves nothing)."""
        return self._identity(username, self.store.verify(password))

    def recall(self, username: str, password: str) -> Identity | None:
        return self._identity(username, self.store.recall(password))

    def _identity(self, username: str, info: ApiTokenInfo | None) -> Identity | None:
        if info is None or not hmac.compare_digest(info.user.encode(), username.encode()):
            return None
        if not self.user_exists(info.user):
            return None
        return Identity(info.user, Via.API_TOKEN, limit=info.scopes)
