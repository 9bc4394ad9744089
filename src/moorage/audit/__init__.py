"""The audit trail: who did what, for changes and for refusals (docs/operations.md#audit-trail)."""
