"""The auth ports: the HTTP layer asks these, and never a concrete backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from moorage.auth.access import Access
from moorage.auth.identity import Identity


class Authenticator(Protocol):
    def authenticate_password(self, username: str, password: str) -> Identity | None:
        """The identity these Basic credentials prove, or None. Must take the same time for an
        unknown user as for a wrong password, and never log either value."""
        ...

    def recall(self, username: str, password: str) -> Identity | None:
        """The identity if these exact credentials were verified recently, else None (which
        means "not known", not "wrong"). Cheap and free of slow hashing, so the HTTP layer may
        call it on the event loop before falling back to authenticate_password on a thread."""
        ...


class Authorizer(Protocol):
    @property
    def generation(self) -> int:
        """Moves when the rules change (a policy file reloaded): answers given before may no
        longer hold, so whoever remembers them must forget them."""
        ...

    def grant(self, identity: Identity, requested: Sequence[Access]) -> list[Access]:
        """The part of ``requested`` that ``identity`` may have (possibly nothing). Never
        raises for a denial; an empty grant is how the token endpoint answers one."""
        ...

    def may_overwrite_tag(self, identity: Identity, repository: str) -> bool:
        """False when a rule makes existing tags in ``repository`` immutable for ``identity``."""
        ...

    def pull_filter(self, identity: Identity) -> Callable[[str], bool]:
        """A predicate telling which repository names ``identity`` may pull (for the catalog),
        cheap to apply to many names."""
        ...

    def pull_prefixes(self, identity: Identity) -> tuple[str, ...] | None:
        """Name prefixes every repository ``identity`` may pull starts with (a bound, not a
        decision: ``pull_filter`` still decides each name), for listings that should read
        only those ranges; None when nothing narrower than every name can be said."""
        ...
