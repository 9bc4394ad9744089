"""The policy file, re-read when it changes, so that an edit (or a file copied to every node)
takes effect on every worker of every node within a bound, without a restart.

The file is read no more than every ``check_seconds`` and parsed when its bytes differ from the
last read. Its bytes, not its ``stat``: a policy file is a few kilobytes, and a copy that keeps
the size and lands within one timestamp tick would fool a fingerprint. A file that no longer
parses, or cannot be read, keeps the last good policy in force and logs an error once per
version of the file: a typo must never lock everyone out (or let everyone in). Whoever
memoizes decisions (:class:`~moorage.auth.gate.AccessGate`) watches :attr:`generation` and
forgets them when it moves.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from moorage.auth.access import Access
from moorage.auth.identity import Identity
from moorage.auth.policy import Policy, PolicyAuthorizer, PolicyError, parse_policy

log = logging.getLogger("moorage.auth")

# How stale a node's policy may be: the bound docs/auth.md#several-nodes promises.
POLICY_CHECK_SECONDS = 2.0


class ReloadingPolicyAuthorizer:
    """The :class:`~moorage.auth.port.Authorizer` over the policy file at ``path``, as it is
    now (at most ``check_seconds`` old). Raises :class:`PolicyError` if the file is invalid at
    construction; later, an invalid file keeps the previous policy. Thread-safe."""

    def __init__(
        self,
        path: Path,
        check_seconds: float = POLICY_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._content = self._read()
        self._authorizer = PolicyAuthorizer(parse_policy(self._content, path))
        self._checked_at = clock()
        # What the last failed read or parse saw (bytes, or the error), so it is logged once.
        self._failed: bytes | str | None = None
        self._generation = 0

    @property
    def generation(self) -> int:
        """Moves each time a new policy takes over: decisions made before are stale."""
        self._current()
        return self._generation

    @property
    def policy(self) -> Policy:
        return self._current().policy

    # --- the Authorizer port, on the current policy ---------------------------------------------
    def grant(self, identity: Identity, requested: Sequence[Access]) -> list[Access]:
        return self._current().grant(identity, requested)

    def may_overwrite_tag(self, identity: Identity, repository: str) -> bool:
        return self._current().may_overwrite_tag(identity, repository)

    def pull_filter(self, identity: Identity) -> Callable[[str], bool]:
        return self._current().pull_filter(identity)

    def pull_prefixes(self, identity: Identity) -> tuple[str, ...] | None:
        return self._current().pull_prefixes(identity)

    # --- reloading -------------------------------------------------------------------------------
    def _current(self) -> PolicyAuthorizer:
        # Per request this is one clock read; the file is read every check_seconds at most.
        if self._clock() - self._checked_at >= self._check_seconds:
            with self._lock:
                if self._clock() - self._checked_at >= self._check_seconds:
                    self._reload_if_changed()
                    self._checked_at = self._clock()
        return self._authorizer

    def _read(self) -> bytes:
        try:
            return self._path.read_bytes()
        except OSError as error:
            raise PolicyError(
                f"cannot read policy file {self._path}: {error.strerror or error}"
            ) from None

    def _reload_if_changed(self) -> None:
        try:
            content = self._read()
        except PolicyError as error:
            self._keep_previous(str(error), str(error))
            return
        if content in (self._content, self._failed):
            return
        try:
            policy = parse_policy(content, self._path)
        except PolicyError as error:
            self._keep_previous(content, str(error))
            return
        self._authorizer = PolicyAuthorizer(policy)
        self._content, self._failed = content, None
        self._generation += 1
        log.info(
            "policy file reloaded", extra={"path": str(self._path), "rules": len(policy.rules)}
        )

    def _keep_previous(self, seen: bytes | str, problem: str) -> None:
        if seen != self._failed:
            log.error(
                "policy file invalid, keeping the previous policy",
                extra={"path": str(self._path), "error": problem},
            )
        self._failed = seen

    def __repr__(self) -> str:
        return f"ReloadingPolicyAuthorizer({str(self._path)!r})"
