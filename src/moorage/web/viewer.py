"""Who is looking at a page, and what the policy lets them see and do: the gate decides,
exactly as it does for the same person's API requests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from moorage.auth.access import ADMIN, DELETE, PULL, USAGE_ACCESS, repository
from moorage.auth.gate import AccessGate, Decision
from moorage.auth.identity import ANONYMOUS, Identity, Via
from moorage.oci.names import is_valid_name
from moorage.web.context import WebContext
from moorage.web.session import SESSION_COOKIE


@dataclass(frozen=True, slots=True)
class Viewer:
    identity: Identity
    gate: AccessGate

    @property
    def auth_enabled(self) -> bool:
        return self.gate.enabled

    @property
    def name(self) -> str | None:
        return self.identity.name

    @property
    def signed_in(self) -> bool:
        return self.identity.name is not None

    @property
    def may_manage_tokens(self) -> bool:
        # Only a password sign-in: a session opened with an API token must not mint tokens
        # that outlive it or reach past its scopes.
        return self.auth_enabled and self.identity.via is Via.PASSWORD

    def may(self, name: str, action: str) -> bool:
        return is_valid_name(name) and (
            self.gate.decide(self.identity, [repository(name, action)]) is Decision.ALLOW
        )

    def may_pull(self, name: str) -> bool:
        return self.may(name, PULL)

    def may_delete(self, name: str) -> bool:
        return self.may(name, DELETE)

    def may_administer(self, name: str) -> bool:
        """The ``admin`` action, as ``DELETE /api/v1/repositories/<name>`` needs it: only the
        policy's admins hold it (no rule or API token scope grants it)."""
        return self.may(name, ADMIN)

    @property
    def may_read_usage(self) -> bool:
        """The registry-wide usage overview: every repository's figures, so for the policy's
        admins only (a page shows what the same person's ``admin`` rights cover)."""
        return self.gate.decide(self.identity, [USAGE_ACCESS]) is Decision.ALLOW

    def visible(self) -> Callable[[str], bool]:
        return self.gate.pull_filter(self.identity)

    def visible_within(self) -> tuple[str, ...] | None:
        """Name prefixes that bound :meth:`visible` (None: no bound)."""
        return self.gate.pull_prefixes(self.identity)


def viewer_of(context: WebContext, request: Request) -> Viewer:
    identity = None
    if context.gate.enabled:
        identity = context.signer.identity(request.cookies.get(SESSION_COOKIE))
    return Viewer(identity or ANONYMOUS, context.gate)
