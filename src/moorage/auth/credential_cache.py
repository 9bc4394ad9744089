"""Remember recent successful password checks, so a slow hash (bcrypt: 2-60 ms) is not paid on
every request: Basic-auth clients resend their credentials with each one.

Entries are keyed by HMAC-SHA256 of ``user NUL password`` under a random key made per process:
the cache never holds a password or anything that can be checked against one offline, and the
NUL keeps ``("ab", "c")`` and ``("a", "bc")`` apart (usernames never contain NUL). Only
successes are stored, so a wrong password is always checked against the real hash. Thread-safe.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL_SECONDS = 60.0
DEFAULT_MAX_ENTRIES = 4096


class CredentialCache:
    """A bounded, expiring set of (user, password) pairs known to be valid."""

    def __init__(
        self,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # fingerprint -> expiry time; insertion order is refresh order, oldest first.
        self._entries: OrderedDict[bytes, float] = OrderedDict()

    def _fingerprint(self, username: str, password: str) -> bytes:
        message = b"\0".join(s.encode("utf-8", "surrogatepass") for s in (username, password))
        return hmac.digest(self._key, message, "sha256")  # the one-shot C path: ~4x faster

    def contains(self, username: str, password: str) -> bool:
        """True when this pair was added less than the TTL ago (and not cleared since).

        The lookup is a dict probe, not a constant-time comparison: the key is a keyed MAC
        whose key never leaves the process, so its timing tells an attacker nothing.
        """
        fingerprint = self._fingerprint(username, password)
        now = self._clock()
        with self._lock:
            expiry = self._entries.get(fingerprint)
            if expiry is None:
                return False
            if expiry <= now:
                del self._entries[fingerprint]
                return False
            return True

    def add(self, username: str, password: str) -> None:
        """Record a successful check; evicts the oldest entry when full."""
        fingerprint = self._fingerprint(username, password)
        expiry = self._clock() + self._ttl
        with self._lock:
            self._entries[fingerprint] = expiry
            self._entries.move_to_end(fingerprint)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (the password file changed)."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __repr__(self) -> str:
        return f"CredentialCache(ttl_seconds={self._ttl}, max_entries={self._max_entries})"
