"""What the UI's handlers are given, built once by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.auth.api_tokens import ApiTokenStore
from moorage.auth.gate import AccessGate
from moorage.services.browse import BrowseService
from moorage.services.manifests import ManifestService
from moorage.services.repositories import RepositoryService
from moorage.services.usage import UsageService
from moorage.web.session import SessionSigner
from moorage.web.throttle import SignInThrottle


@dataclass(frozen=True, slots=True)
class WebContext:
    browse: BrowseService
    manifests: ManifestService
    usage: UsageService
    repositories: RepositoryService
    gate: AccessGate
    # None when authentication is off: there are no users to hold tokens.
    tokens: ApiTokenStore | None
    signer: SessionSigner
    throttle: SignInThrottle
    page_size: int
