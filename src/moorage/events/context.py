"""Who made the request being served, for the events its changes produce.

The request observer and the auth layer set these; the metadata store reads them while it
writes an event in the change's transaction. Context variables reach the worker thread a
handler's service call runs on (anyio copies the context), so no signature between the handler
and the store has to carry them.
"""

from __future__ import annotations

from contextvars import ContextVar

ACTOR: ContextVar[str | None] = ContextVar("moorage_actor", default=None)
REQUEST_ID: ContextVar[str | None] = ContextVar("moorage_request_id", default=None)
