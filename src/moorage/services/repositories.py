"""Removing a whole repository (an operator's or an admin's act, not part of the OCI API)."""

from __future__ import annotations

from moorage.errors import ErrorCode, RegistryError
from moorage.metadata.usage import DeletedRepository, UsageStore


class RepositoryService:
    def __init__(self, store: UsageStore, delete_enabled: bool = True) -> None:
        self.store = store
        self.delete_enabled = delete_enabled

    def delete(self, name: str) -> DeletedRepository:
        """Remove the repository's tags, manifests and blob links in one transaction; the
        collector reclaims the blob bytes nothing else uses. NAME_UNKNOWN if there is none."""
        if not self.delete_enabled:
            raise RegistryError(ErrorCode.UNSUPPORTED, "deletion is disabled on this registry")
        deleted = self.store.delete_repository(name)
        if deleted is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": name[:256]})
        return deleted
