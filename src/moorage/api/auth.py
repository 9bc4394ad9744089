"""Authentication on the wire: credentials from the Authorization header, 401 challenges,
403 refusals, and the token endpoint of the Docker token spec (GET and the OAuth2 form POST).

The decisions themselves are the AccessGate's; this module only speaks HTTP.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import Response

from moorage.api.body import read_at_most
from moorage.api.request_state import IDENTITY_KEY
from moorage.api.responses import json_response
from moorage.audit.entry import AUDIT_KEY, LOGIN_FAILED, REFUSED, AuditNote
from moorage.auth.access import Access, ScopeError, parse_scopes
from moorage.auth.gate import AccessGate, Decision, RefreshRefused
from moorage.auth.identity import ANONYMOUS, Identity, Via
from moorage.errors import ErrorCode, RegistryError
from moorage.events.context import ACTOR
from moorage.telemetry.metrics import AUTHENTICATIONS, AUTHORIZATION_REFUSALS
from moorage.threads import in_thread

log = logging.getLogger("moorage.auth")

# The authentication outcomes counted (moorage_authentications_total).
AUTH_SUCCESS = AUTHENTICATIONS.labels("success")
AUTH_WRONG_CREDENTIALS = AUTHENTICATIONS.labels("wrong_credentials")
AUTH_TOKEN_REFUSED = AUTHENTICATIONS.labels("token_refused")
_REFUSAL_REASONS = {
    Decision.DENY: "denied",
    Decision.INSUFFICIENT_SCOPE: "insufficient_scope",
    Decision.CHALLENGE: "authentication_required",
}

TOKEN_PATH = "/token"  # noqa: S105 - a URL path, not a secret
# A token request form is a few hundred bytes; anything near this is not one.
TOKEN_FORM_MAX_BYTES = 64 * 1024


def _realm(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{TOKEN_PATH}"


def _basic_challenge(gate: AccessGate) -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{gate.realm}", charset="UTF-8"'}


def challenge(
    gate: AccessGate, request: Request, needed: Sequence[Access], error: str | None = None
) -> dict[str, str]:
    """The WWW-Authenticate header that tells a client how to authenticate for ``needed``."""
    if not gate.tokens_enabled:
        return _basic_challenge(gate)
    params = [f'realm="{_realm(request)}"', f'service="{gate.service}"']
    if needed:
        params.append(f'scope="{" ".join(access.scope() for access in needed)}"')
    if error:
        params.append(f'error="{error}"')
    return {"WWW-Authenticate": "Bearer " + ",".join(params)}


def _denial_detail(needed: Sequence[Access]) -> list[dict[str, str]]:
    return [
        {"Type": access.type, "Name": access.name[:256], "Action": ",".join(sorted(access.actions))}
        for access in needed
    ]


def _basic_credentials(value: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def _unauthorized(
    gate: AccessGate, request: Request, needed: Sequence[Access], message: str, error: str | None
) -> RegistryError:
    return RegistryError(
        ErrorCode.UNAUTHORIZED,
        message,
        _denial_detail(needed),
        headers=challenge(gate, request, needed, error),
    )


async def _login(gate: AccessGate, username: str, password: str) -> Identity | None:
    # Credentials seen recently are answered at once; a first bcrypt check costs 2 to 60 ms,
    # so it never runs on the event loop.
    identity = gate.recall(username, password)
    if identity is not None:
        return identity
    return await in_thread(gate.login, username, password)


class _CredentialsRefused(Exception):
    """An Authorization header was sent and proves nothing. ``message`` is safe to show the
    client (it never holds any part of the credentials); ``error`` is the Bearer challenge's
    error parameter, if any."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error = error


async def _authenticate(gate: AccessGate, request: Request) -> Identity:
    """Who the Authorization header says sent ``request``: anonymous only when there is none.
    Credentials that are presented and wrong raise _CredentialsRefused, never a silent fall
    back to anonymous (which would turn a typo into "repository not found", or serve a
    script whose password expired only what is public)."""
    header = request.headers.get("authorization")
    if not header or not gate.enabled:
        return ANONYMOUS
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        credentials = _basic_credentials(value)
        identity = await _login(gate, *credentials) if credentials else None
        if identity is None:
            AUTH_WRONG_CREDENTIALS.inc()
            _audit_login_failure(request, credentials[0] if credentials else None)
            raise _CredentialsRefused("invalid username or password")
        AUTH_SUCCESS.inc()
        return identity
    if scheme == "bearer" and gate.tokens_enabled:
        try:
            identity = gate.bearer(value)
        except Exception as error:  # the verifier's refusal; its reason is safe to show
            AUTH_TOKEN_REFUSED.inc()
            raise _CredentialsRefused(f"invalid token: {error}", "invalid_token") from None
        AUTH_SUCCESS.inc()
        return identity
    AUTH_WRONG_CREDENTIALS.inc()  # credentials we cannot check are as good as wrong ones
    _audit_login_failure(request, None)
    raise _CredentialsRefused("unsupported authorization scheme")


async def identify(gate: AccessGate, request: Request, needed: Sequence[Access] = ()) -> Identity:
    """Who sent a /v2 ``request``; refused credentials are a 401 with the challenge for
    ``needed``, whatever the policy would let an anonymous caller do."""
    try:
        return await _authenticate(gate, request)
    except _CredentialsRefused as refused:
        raise _unauthorized(gate, request, needed, refused.message, refused.error) from None


def enforce(
    gate: AccessGate, request: Request, identity: Identity, needed: Sequence[Access]
) -> None:
    """Raise the 401 or 403 the gate's decision calls for; return when allowed."""
    decision = gate.decide(identity, needed)
    if decision is Decision.ALLOW:
        return
    AUTHORIZATION_REFUSALS.labels(_REFUSAL_REASONS[decision]).inc()
    if decision is Decision.DENY:
        raise RegistryError(ErrorCode.DENIED, None, _denial_detail(needed))
    error = "insufficient_scope" if decision is Decision.INSUFFICIENT_SCOPE else None
    raise _unauthorized(gate, request, needed, "authentication required", error)


# --- the token endpoint ------------------------------------------------------------------------


def _token_error(message: str, status: int = 400) -> RegistryError:
    return RegistryError(ErrorCode.UNSUPPORTED, message, status=status)


def _token_refused(gate: AccessGate, message: str) -> RegistryError:
    """A 401 from the token endpoint. It asks for Basic credentials, the only kind it takes
    (a 401 must carry a challenge, RFC 9110 section 15.5.2), as distribution's token server
    does; the Bearer challenge of /v2 would send the client back here."""
    return RegistryError(ErrorCode.UNAUTHORIZED, message, headers=_basic_challenge(gate))


def _requested(scopes: list[str]) -> list[Access]:
    try:
        return parse_scopes(scopes)
    except ScopeError as error:
        raise _token_error(str(error)[:300]) from None


def _check_service(gate: AccessGate, service: str | None) -> None:
    if service is not None and service != gate.service:
        raise _token_error(f"this token service is for service {gate.service!r}")


async def token_get(gate: AccessGate, request: Request) -> Response:
    """``GET /token?service=&scope=&offline_token=&client_id=`` with optional Basic auth."""
    if not gate.tokens_enabled:
        raise RegistryError(ErrorCode.UNSUPPORTED, "the token service is off", status=404)
    query = request.query_params
    _check_service(gate, query.get("service"))
    requested = _requested(query.getlist("scope"))
    try:
        identity = await _authenticate(gate, request)
    except _CredentialsRefused as refused:
        raise _token_refused(gate, refused.message) from None
    remember_identity(request, identity)
    if identity.via is Via.BEARER:
        # A token must not mint fresh tokens: that would make a stolen one immortal.
        raise _token_refused(gate, "log in with a password or an API token, not a bearer token")
    offline = query.get("offline_token", "").lower() == "true"
    grant = gate.issue(identity, requested, offline=offline, client_id=query.get("client_id", ""))
    body: dict[str, object] = {
        "token": grant.token,
        "access_token": grant.token,
        "expires_in": grant.expires_in,
        "issued_at": grant.issued_at,
    }
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    return json_response(body, headers={"Cache-Control": "no-store"})


async def token_post(gate: AccessGate, request: Request) -> Response:
    """The OAuth2 form POST: ``grant_type=password`` or ``grant_type=refresh_token``."""
    if not gate.tokens_enabled:
        raise RegistryError(ErrorCode.UNSUPPORTED, "the token service is off", status=404)
    raw = await read_at_most(
        request, TOKEN_FORM_MAX_BYTES, _token_error("token request too large", 413)
    )
    try:
        form = parse_qs(raw.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise _token_error("the form is not UTF-8") from None

    def field(name: str) -> str:
        values = form.get(name)
        return values[0] if values else ""

    _check_service(gate, field("service") or None)
    requested = _requested(form.get("scope", []))
    client_id = field("client_id")
    grant_type = field("grant_type")
    if grant_type == "password":
        identity = await _login(gate, field("username"), field("password"))
        if identity is None:
            AUTH_WRONG_CREDENTIALS.inc()
            _audit_login_failure(request, field("username"))
            raise _token_refused(gate, "invalid username or password")
        AUTH_SUCCESS.inc()
        remember_identity(request, identity)
        offline = field("access_type") == "offline"
        grant = gate.issue(identity, requested, offline=offline, client_id=client_id)
    elif grant_type == "refresh_token":
        try:
            grant = gate.refresh(field("refresh_token"), requested, client_id=client_id)
        except RefreshRefused:
            AUTH_TOKEN_REFUSED.inc()
            raise _token_refused(gate, "invalid refresh token") from None
        AUTH_SUCCESS.inc()
    else:
        raise _token_error("grant_type must be password or refresh_token")
    body: dict[str, object] = {
        "access_token": grant.token,
        "expires_in": grant.expires_in,
        "issued_at": grant.issued_at,
        "scope": " ".join(access.scope() for access in grant.granted),
    }
    if grant.refresh_token:
        body["refresh_token"] = grant.refresh_token
    return json_response(body, headers={"Cache-Control": "no-store"})


def remember_identity(request: Request, identity: Identity) -> None:
    request.scope[IDENTITY_KEY] = identity
    ACTOR.set(identity.name)  # for the events this request's changes write


def _audit_login_failure(request: Request, user: str | None) -> None:
    """Note a wrong password or token for the audit trail: the user name tried, never the
    secret."""
    request.scope[AUDIT_KEY] = AuditNote(LOGIN_FAILED, REFUSED, user=user)


def identity_of(request: Request) -> Identity:
    """The identity the auth layer attached to this request (anonymous when auth is off)."""
    identity: Identity = request.scope.get(IDENTITY_KEY, ANONYMOUS)
    return identity
