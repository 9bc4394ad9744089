"""The audit trail's buffer: entries are written to the database in batches, off the request.

Why: a refused request must not cost a database write, or anyone could hammer the database
(and SQLite's single writer) with bad passwords. So each worker process keeps entries in memory
and a background task writes them once a second in one transaction. Refusals (failed logins,
policy denials) that repeat within that second with the same action, user, client and
repository are coalesced into one entry with a ``count``; changes (pushes, deletes, tokens) are
never coalesced. At most ``max_pending`` entries wait; beyond that new refusals are counted in
the newest entry of their kind, or dropped and counted in :attr:`dropped` (logged at flush). A
worker killed outright loses at most its last second of entries.
"""

from __future__ import annotations

import dataclasses
import threading

from moorage.audit.entry import REFUSED, AuditEntry


class AuditTrail:
    def __init__(self, max_pending: int = 10_000) -> None:
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._entries: list[AuditEntry] = []
        self._refusals: dict[tuple[str, str | None, str | None, str | None], int] = {}
        self.dropped = 0

    def add(self, entry: AuditEntry) -> None:
        with self._lock:
            if entry.outcome == REFUSED:
                key = entry.coalescing_key()
                index = self._refusals.get(key)
                if index is not None:
                    seen = self._entries[index]
                    self._entries[index] = dataclasses.replace(seen, count=seen.count + 1)
                    return
                if len(self._entries) >= self.max_pending:
                    self.dropped += 1
                    return
                self._refusals[key] = len(self._entries)
            elif len(self._entries) >= self.max_pending:
                self.dropped += 1
                return
            self._entries.append(entry)

    def drain(self) -> tuple[list[AuditEntry], int]:
        """The entries gathered since the last drain, and how many were dropped."""
        with self._lock:
            entries, self._entries = self._entries, []
            self._refusals.clear()
            dropped, self.dropped = self.dropped, 0
        return entries, dropped
