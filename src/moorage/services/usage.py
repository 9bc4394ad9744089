"""Usage and quotas: which quota applies to a repository, the usage report, and the message a
refused push gets. How bytes are counted is defined in :mod:`moorage.metadata.usage`."""

from __future__ import annotations

from collections.abc import Sequence

from moorage.auth.policy import matches
from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.usage import Quota, QuotaExceeded, UsageReport, UsageStore
from moorage.units import human_bytes


class Quotas:
    """The configured quotas, in order: the first whose pattern matches a repository is its
    quota, so a specific entry placed before a broad one is an exception to it."""

    def __init__(self, quotas: Sequence[Quota] = ()) -> None:
        self.quotas = tuple(quotas)

    def for_repository(self, repository: str) -> Quota | None:
        for quota in self.quotas:
            if matches(quota.pattern, repository):
                return quota
        return None


NO_QUOTAS = Quotas()


def quota_refusal(repository: str, exceeded: QuotaExceeded) -> RegistryError:
    """The 403 DENIED a push over quota gets, naming the quota, the limit and the usage."""
    quota = exceeded.quota
    if exceeded.limit == "max_bytes":
        usage = f"{human_bytes(exceeded.usage)} ({exceeded.usage} bytes)"
        allowed = f"{human_bytes(exceeded.allowed)} ({exceeded.allowed} bytes)"
    else:
        usage, allowed = f"{exceeded.usage} tags", f"{exceeded.allowed} tags"
    message = (
        f"quota exceeded: with this manifest {repository} would hold {usage}; the quota for "
        f"{quota.pattern!r} allows {exceeded.limit} {allowed}"
    )
    detail = {
        "repository": repository[:256],
        "quota": quota.pattern,
        "limit": exceeded.limit,
        "allowed": exceeded.allowed,
        "usage": exceeded.usage,
    }
    return RegistryError(ErrorCode.DENIED, message, detail)


class UsageService:
    def __init__(self, store: UsageStore) -> None:
        self.store = store

    def report(self, pattern: str | None = None) -> UsageReport:
        """Usage of the repositories matching the glob ``pattern`` (all when None)."""
        return self.store.usage(pattern)
