"""The webhook signature: HMAC-SHA256 of the exact request body with the endpoint's secret,
sent as ``Moorage-Signature: sha256=<hex>``. The body holds the event's id and time, so a
receiver that remembers ids it has seen (at-least-once delivery needs that anyway) and checks
the time also defeats replays."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Moorage-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign(secret, body), header)
