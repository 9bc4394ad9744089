"""The access gate: the use cases of authentication and authorization, without HTTP.

The /v2 side asks :meth:`AccessGate.decide` whether an identity may perform the accesses a
request needs; the token endpoint asks :meth:`AccessGate.issue` for a JWT carrying what the
policy grants. Both run the same Authenticator and Authorizer, so a decision made at the token
endpoint and one made on a Basic-authenticated /v2 request never disagree.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from moorage.auth.access import CATALOG_ACCESS, REPOSITORY, Access, covers
from moorage.auth.identity import ANONYMOUS, Identity, Via
from moorage.auth.port import Authenticator, Authorizer
from moorage.oci.names import is_valid_name

# Distinct (identity, accesses) pairs remembered before the memo starts over.
DECISION_CACHE_SIZE = 4096


class Decision(enum.Enum):
    ALLOW = "allow"
    # 401: the caller has not proved who they are (or their credentials are bad).
    CHALLENGE = "challenge"
    # 401 with error="insufficient_scope": a token lacks an access its subject could get, so
    # the client should fetch a new token for the scope in the challenge.
    INSUFFICIENT_SCOPE = "insufficient_scope"
    # 403: authenticated, and the policy does not allow it.
    DENY = "deny"


class IssuedToken(Protocol):
    @property
    def token(self) -> str: ...

    @property
    def expires_in(self) -> int: ...

    @property
    def issued_at(self) -> str: ...


@dataclass(frozen=True)
class RefreshClaims:
    """What a verified refresh token says: whose it is, which client it was issued to, and
    the tag of the subject's credential at the time (see ``Issuer.credential_binding``)."""

    subject: str
    client_id: str
    credential_binding: str


class Issuer(Protocol):
    def issue(
        self, subject: str | None, audience: str, access: Sequence[Access]
    ) -> IssuedToken: ...

    def issue_refresh(
        self, subject: str, audience: str, client_id: str, credential: str
    ) -> str: ...

    def verify_refresh(self, token: str, audience: str) -> RefreshClaims: ...

    def credential_binding(self, credential: str) -> str: ...


class Verifier(Protocol):
    def verify(self, token: str) -> Identity: ...


class RefreshRefused(Exception):
    """A refresh token that is invalid, expired, or whose user no longer exists."""


@dataclass(frozen=True, slots=True)
class TokenGrant:
    token: str
    expires_in: int
    issued_at: str
    granted: list[Access]
    refresh_token: str | None


@dataclass(frozen=True, slots=True)
class AccessGate:
    """``enabled`` False means no authentication is configured: every request is allowed."""

    enabled: bool
    authenticators: Sequence[Authenticator]
    authorizer: Authorizer
    service: str
    issuer: Issuer | None = None
    verifier: Verifier | None = None
    # A user's stored credential (password hash), or None once the user is gone: a refresh
    # token is honoured only while it is unchanged, so removing a user or changing their
    # password ends the refresh tokens they hold.
    credential_of: Callable[[str], str | None] = lambda _: None
    # Whether a user still exists, for bearer tokens we issued; cheap enough for every request
    # (it may be up to a second stale).
    user_exists: Callable[[str], bool] = lambda _: True
    # The realm named in Basic challenges.
    realm: str = "moorage"
    _decisions: dict[tuple[Identity, tuple[Access, ...]], Decision] = field(
        default_factory=dict, repr=False, compare=False
    )
    # The authorizer's generation the remembered decisions were made under.
    _decided_under: list[int] = field(default_factory=lambda: [0], repr=False, compare=False)

    @property
    def tokens_enabled(self) -> bool:
        return self.issuer is not None

    def login(self, username: str, password: str) -> Identity | None:
        """The identity Basic credentials prove: an API token or an htpasswd user."""
        for authenticator in self.authenticators:
            identity = authenticator.authenticate_password(username, password)
            if identity is not None:
                return identity
        return None

    def recall(self, username: str, password: str) -> Identity | None:
        """The identity these credentials proved recently, without slow hashing; None if not
        known (they may still be right: ask :meth:`login`)."""
        for authenticator in self.authenticators:
            identity = authenticator.recall(username, password)
            if identity is not None:
                return identity
        return None

    def bearer(self, token: str) -> Identity:
        """The identity a bearer JWT carries; raises the verifier's error when it is invalid."""
        if self.verifier is None:
            raise ValueError("bearer tokens are not accepted here")
        return self.verifier.verify(token)

    def decide(self, identity: Identity, needed: Sequence[Access]) -> Decision:
        """May ``identity`` perform every access in ``needed``? An empty ``needed`` asks only
        that the caller be authenticated (``GET /v2/``)."""
        if not self.enabled:
            return Decision.ALLOW
        if (
            identity.issued_here
            and identity.name is not None
            and not self.user_exists(identity.name)
        ):
            return Decision.CHALLENGE  # our token for a user removed since: invalid now
        # Under one policy a decision is a pure function of its arguments: remembered, it costs
        # a dict probe instead of a policy walk (~5 us). A reloaded policy forgets them all.
        generation = self.authorizer.generation
        if generation != self._decided_under[0]:
            self._decisions.clear()
            self._decided_under[0] = generation
        key = (identity, tuple(needed))
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(identity, needed)
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            if self._decided_under[0] == generation:  # else another thread saw a new policy
                self._decisions[key] = decision
        return decision

    def _decide(self, identity: Identity, needed: Sequence[Access]) -> Decision:
        if identity.via is Via.BEARER:
            return self._decide_bearer(identity, needed)
        if not needed:
            return Decision.CHALLENGE if identity.anonymous else Decision.ALLOW
        granted = self.authorizer.grant(identity, needed)
        if all(covers(granted, access) for access in needed):
            return Decision.ALLOW
        return Decision.CHALLENGE if identity.anonymous else Decision.DENY

    def _decide_bearer(self, identity: Identity, needed: Sequence[Access]) -> Decision:
        held = identity.limit or ()
        if not needed:
            return Decision.CHALLENGE if identity.anonymous else Decision.ALLOW
        holds = all(covers(held, access) for access in needed)
        if holds and not identity.issued_here:
            return Decision.ALLOW  # an external issuer's grant is its own business
        # Our own tokens were granted under the policy of their time: they hold only what the
        # policy still grants, so a changed policy binds tokens already issued too. And would
        # a new token for the subject carry it? Then say so; the client will fetch one.
        possible = self.authorizer.grant(_as_subject(identity), needed)
        if all(covers(possible, access) for access in needed):
            return Decision.ALLOW if holds else Decision.INSUFFICIENT_SCOPE
        return Decision.CHALLENGE if identity.anonymous else Decision.DENY

    def may_overwrite_tag(self, identity: Identity, repository: str) -> bool:
        """False when a rule makes the tags of ``repository`` immutable for ``identity``."""
        if not self.enabled:
            return True
        return self.authorizer.may_overwrite_tag(_as_subject(identity), repository)

    def pull_filter(self, identity: Identity) -> Callable[[str], bool]:
        """Which repositories ``identity`` may pull, for filtering the catalog. A bearer
        token's subject is judged by the policy (a catalog token lists no repositories)."""
        if not self.enabled:
            return lambda _: True
        return self.authorizer.pull_filter(_as_subject(identity))

    def pull_prefixes(self, identity: Identity) -> tuple[str, ...] | None:
        """Name prefixes that bound what ``identity`` may pull (see
        :meth:`Authorizer.pull_prefixes`); None when auth is off or nothing narrower holds."""
        if not self.enabled:
            return None
        return self.authorizer.pull_prefixes(_as_subject(identity))

    def issue(
        self,
        identity: Identity,
        requested: Sequence[Access],
        *,
        offline: bool = False,
        client_id: str = "",
    ) -> TokenGrant:
        """A token for what the policy grants of ``requested`` (possibly nothing: an empty grant
        is an answer, not an error), with a refresh token when ``offline`` is asked by a user
        who logged in with a password."""
        if self.issuer is None:
            raise ValueError("the token service is off")
        wanted = [access for access in requested if _grantable(access)]
        granted = self.authorizer.grant(identity, wanted) if wanted else []
        issued = self.issuer.issue(identity.name, self.service, granted)
        refresh = None
        # An API token's scopes would not survive a refresh, and its secret is long-lived
        # anyway, so only password logins get refresh tokens.
        if offline and identity.name is not None and identity.via is Via.PASSWORD:
            credential = self.credential_of(identity.name)
            if credential is not None:
                refresh = self.issuer.issue_refresh(
                    identity.name, self.service, client_id, credential
                )
        return TokenGrant(issued.token, issued.expires_in, issued.issued_at, granted, refresh)

    def refresh(
        self, refresh_token: str, requested: Sequence[Access], *, client_id: str = ""
    ) -> TokenGrant:
        """A new access token (and the same refresh token) for a refresh token's subject."""
        if self.issuer is None:
            raise ValueError("the token service is off")
        try:
            claims = self.issuer.verify_refresh(refresh_token, self.service)
        except Exception as error:
            raise RefreshRefused("invalid refresh token") from error
        credential = self.credential_of(claims.subject)
        if credential is None or not hmac.compare_digest(
            claims.credential_binding, self.issuer.credential_binding(credential)
        ):
            raise RefreshRefused("invalid refresh token")  # user removed, or password changed
        if not hmac.compare_digest(claims.client_id, client_id):
            raise RefreshRefused("invalid refresh token")  # issued to another client
        grant = self.issue(Identity(claims.subject, Via.PASSWORD), requested, client_id=client_id)
        return TokenGrant(
            grant.token, grant.expires_in, grant.issued_at, grant.granted, refresh_token
        )


def _grantable(access: Access) -> bool:
    """Only well-formed requests reach the policy: a repository scope must name a valid
    repository (so a glob or a `:` in the name can never widen a grant), and the catalog is
    the only registry resource."""
    if access.type == REPOSITORY:
        return is_valid_name(access.name)
    return access.type == CATALOG_ACCESS.type and access.name == CATALOG_ACCESS.name


def _as_subject(identity: Identity) -> Identity:
    """The user a bearer token speaks for, to be judged by the policy (an access claim lists
    what one token holds, not what its subject may do)."""
    if identity.via is not Via.BEARER:
        return identity
    return Identity(identity.name, Via.PASSWORD) if identity.name else ANONYMOUS
