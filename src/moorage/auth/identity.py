"""Who a request comes from, once its credentials have been checked."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from moorage.auth.access import Access


class Via(enum.Enum):
    """How the caller proved who they are."""

    ANONYMOUS = "anonymous"
    PASSWORD = "password"  # noqa: S105 - an htpasswd user's password
    API_TOKEN = "api_token"  # noqa: S105 - a `moorage token create` secret, used as a password
    BEARER = "bearer"  # a JWT from the token service (or a trusted external issuer)


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller (or the anonymous one).

    ``limit`` narrows what the caller may get below what the policy allows: an API token's
    scopes, or a bearer JWT's ``access`` claim (then the policy is not consulted at all).
    None means no limit beyond the policy.
    """

    name: str | None
    via: Via
    limit: tuple[Access, ...] | None = None
    # A bearer token from our own token service (not a trusted external issuer): its subject
    # must still exist and the policy must still grant what it holds.
    issued_here: bool = False

    @property
    def anonymous(self) -> bool:
        return self.name is None


ANONYMOUS = Identity(None, Via.ANONYMOUS)
