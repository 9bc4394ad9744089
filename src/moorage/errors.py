"""The registry's error codes, each declared once with its message and HTTP status.

Services raise :class:`RegistryError` carrying an :class:`ErrorCode`; the HTTP layer renders
every one of them the same way, as the OCI error envelope
``{"errors": [{"code", "message", "detail"}]}``.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    """OCI distribution error codes (plus Docker's extras) with their default status."""

    BLOB_UNKNOWN = ("blob unknown to registry", 404)
    BLOB_UPLOAD_INVALID = ("blob upload invalid", 400)
    BLOB_UPLOAD_UNKNOWN = ("blob upload unknown to registry", 404)
    DIGEST_INVALID = ("provided digest did not match uploaded content", 400)
    MANIFEST_BLOB_UNKNOWN = ("manifest references a manifest or blob unknown to registry", 400)
    MANIFEST_INVALID = ("manifest invalid", 400)
    MANIFEST_UNKNOWN = ("manifest unknown to registry", 404)
    NAME_INVALID = ("invalid repository name", 400)
    NAME_UNKNOWN = ("repository name not known to registry", 404)
    SIZE_INVALID = ("provided length did not match content length", 400)
    UNAUTHORIZED = ("authentication required", 401)
    DENIED = ("requested access to the resource is denied", 403)
    UNSUPPORTED = ("the operation is unsupported", 405)
    TOOMANYREQUESTS = ("too many requests", 429)
    PAGINATION_NUMBER_INVALID = ("invalid number of results requested", 400)
    RANGE_INVALID = ("invalid content range", 416)
    MANIFEST_TOO_BIG = ("manifest exceeds the size limit", 413)
    UNKNOWN = ("unknown error", 500)
    UNAVAILABLE = ("service unavailable", 503)

    def __init__(self, message: str, status: int) -> None:
        self.default_message = message
        self.status = status

    @property
    def wire_name(self) -> str:
        """The code as it appears on the wire (``MANIFEST_TOO_BIG`` is the spec's SIZE_INVALID)."""
        return "SIZE_INVALID" if self is ErrorCode.MANIFEST_TOO_BIG else self.name


# Error bodies echo what the client sent (a tag, a digest, a media type): bounded here, once,
# so no caller can reflect an unbounded string back.
MAX_ECHO = 256


def _clip(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "..."
    if isinstance(value, dict):
        return {_clip(k): _clip(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip(v) for v in value]
    return value


class RegistryError(Exception):
    """A failure the client caused or can act on; rendered as an OCI error envelope."""

    def __init__(
        self,
        code: ErrorCode,
        message: str | None = None,
        detail: Any = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = _clip(message or code.default_message)
        self.detail = _clip(detail)
        self.status = status or code.status
        self.headers = headers or {}
        super().__init__(f"{code.name}: {self.message}")

    def envelope(self) -> dict[str, Any]:
        """The JSON body of the error response."""
        entry: dict[str, Any] = {"code": self.code.wire_name, "message": self.message}
        entry["detail"] = self.detail if self.detail is not None else {}
        return {"errors": [entry]}
