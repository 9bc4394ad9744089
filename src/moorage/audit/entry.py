"""One audit entry, and the actions it can name."""

from __future__ import annotations

from dataclasses import dataclass

LOGIN_FAILED = "login.failed"
ACCESS_DENIED = "access.denied"
MANIFEST_PUSH = "manifest.push"
MANIFEST_DELETE = "manifest.delete"
BLOB_DELETE = "blob.delete"
REPOSITORY_DELETE = "repository.delete"
TOKEN_CREATE = "token.create"  # noqa: S105 (an action name)
TOKEN_REVOKE = "token.revoke"  # noqa: S105 (an action name)

OK, REFUSED = "ok", "refused"

# Where a handler leaves its AuditNote in the request's ASGI scope (beside the keys of
# moorage.api.request_state; here so that the web UI can set it without importing the API).
AUDIT_KEY = "moorage.audit"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float  # Unix time
    action: str
    outcome: str  # ok or refused
    user: str | None = None  # who (for a failed login: the user name tried)
    client: str | None = None  # address, after the trusted-proxy rules
    repository: str | None = None
    reference: str | None = None  # tag or digest; a token's id
    status: int | None = None  # the HTTP status answered
    request_id: str | None = None
    count: int = 1  # identical refusals coalesced into this entry

    def coalescing_key(self) -> tuple[str, str | None, str | None, str | None]:
        return (self.action, self.user, self.client, self.repository)


@dataclass(frozen=True, slots=True)
class AuditNote:
    """What a handler tells the audit trail about its request, when the route and status do not
    say it (a failed login, a token created in the UI). Kept in the request's ASGI scope."""

    action: str
    outcome: str = OK
    user: str | None = None
    reference: str | None = None
