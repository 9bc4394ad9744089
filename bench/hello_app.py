#!/usr/bin/env python3
"""A bare ASGI "hello" app served by granian exactly as `moorage serve` serves Moorage (the same
`moorage.cli.main.granian_server` options), so bench/ceiling.py can show the framework's own
ceiling next to Moorage's figures.

    .venv/bin/python bench/hello_app.py --port 5099 --workers 2
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from moorage.cli.main import granian_server
from moorage.config import load_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
BODY = b"hello"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """200 "hello" to every request (headers only to HEAD); nothing else."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else BODY})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", default="auto", help="as moorage serve --workers")
    args = ap.parse_args()
    settings = load_settings(listen={"host": args.host, "port": args.port}, workers=args.workers)
    granian_server(settings, None, target="hello_app:app", factory=False).serve()


if __name__ == "__main__":
    main()
