"""Usage and quotas: which quota applies to a repository, the usage report, and the message a
refused push gets. How bytes are counted is defined in :mod:`moorage.metadata.usage`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from moorage.auth.policy import matches
from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.usage import (
    Quota,
    QuotaExceeded,
    RepositoryUsage,
    UsageReport,
    UsageStore,
)
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


@dataclass(frozen=True, slots=True)
class RepositoryStanding:
    """A repository's usage and the quota that applies to it (None: no limit)."""

    usage: RepositoryUsage
    quota: Quota | None

    @property
    def bytes_fraction(self) -> float | None:
        """How full ``max_bytes`` is (1.0: at the limit; above after a quota was lowered);
        None without a byte limit. The same figure a push is checked against."""
        if self.quota is None or self.quota.max_bytes is None:
            return None
        return self.usage.bytes / self.quota.max_bytes if self.quota.max_bytes else 1.0

    @property
    def tags_fraction(self) -> float | None:
        if self.quota is None or self.quota.max_tags is None:
            return None
        return self.usage.tags / self.quota.max_tags if self.quota.max_tags else 1.0


class UsageService:
    def __init__(self, store: UsageStore, quotas: Quotas = NO_QUOTAS) -> None:
        self.store = store
        self.quotas = quotas

    def repository(self, name: str) -> RepositoryStanding | None:
        """One repository's usage and quota; None if it does not exist."""
        usage = self.store.repository_usage(name)
        if usage is None:
            return None
        return RepositoryStanding(usage, self.quotas.for_repository(name))

    def report(self, pattern: str | None = None) -> UsageReport:
        """Usage of the repositories matching the glob ``pattern`` (all when None)."""
        return self.store.usage(pattern)
