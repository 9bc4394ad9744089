"""Which requests the audit trail records, from what the request observer saw of them.

A request is recorded when it changed something (a manifest push, a delete, a repository
delete), was refused (a wrong password or token; the policy's 403), or when its handler left
an :class:`~moorage.audit.entry.AuditNote` (the UI's token pages and sign-in). Nothing else
(pulls, listings, the 401 that starts every login) is, and nothing from a header, a body or a
query string goes in: no password or token can reach the trail.
"""

from __future__ import annotations

from moorage.api.observe import RequestRecord
from moorage.api.routes import BLOB, MANIFEST
from moorage.audit import entry as a
from moorage.audit.entry import AuditEntry, AuditNote
from moorage.audit.trail import AuditTrail

REPOSITORY_ROUTE = "/api/v1/repositories/{name}"

_CHANGES = {
    (MANIFEST, "PUT"): a.MANIFEST_PUSH,
    (MANIFEST, "DELETE"): a.MANIFEST_DELETE,
    (BLOB, "DELETE"): a.BLOB_DELETE,
    (REPOSITORY_ROUTE, "DELETE"): a.REPOSITORY_DELETE,
}


def audit_entry(record: RequestRecord) -> AuditEntry | None:
    note = record.audit
    if isinstance(note, AuditNote):
        return _entry(record, note.action, note.outcome, note.user or record.user, note.reference)
    if record.status == 403 and record.error == "DENIED":
        return _entry(record, a.ACCESS_DENIED, a.REFUSED, record.user, record.reference)
    action = _CHANGES.get((record.route, record.method))
    if action is not None and 200 <= record.status < 300:
        return _entry(record, action, a.OK, record.user, record.reference)
    return None


def _entry(
    record: RequestRecord, action: str, outcome: str, user: str | None, reference: str | None
) -> AuditEntry:
    return AuditEntry(
        at=record.started,
        action=action,
        outcome=outcome,
        user=user,
        client=record.client,
        repository=record.repository,
        reference=reference or None,
        status=record.status,
        request_id=record.request_id,
    )


class AuditRecorder:
    """A request recorder (see :mod:`moorage.api.observe`) feeding the trail's buffer."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    def __call__(self, record: RequestRecord) -> None:
        entry = audit_entry(record)
        if entry is not None:
            self.trail.add(entry)
