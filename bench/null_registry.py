"""A registry that stores nothing: just enough of the distribution API for `skopeo copy` (or
any client) to push an image, with every body discarded (spliced to /dev/null, never copied
to user space) and no hashing, no disk, no database. What a push costs the client alone, on
the same loopback, measured the way a push to a real registry is: the floor for any registry.

    python bench/null_registry.py --port 5099

Answers: GET /v2/ 200; HEAD of a blob or manifest 404 (nothing is ever there, so every blob
is uploaded); POST .../blobs/uploads/ 202 with a Location (also for a cross-repository mount
request: never mounted); PATCH 202 with a Range; PUT of an upload 201 with the digest it
names; PUT of a manifest 201 with the sha256 of its bytes (the only body it reads). One
thread per connection, as a client pushes several layers at once. See bench/README.md.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import socket
import socketserver
import threading
import uuid
from urllib.parse import parse_qs, urlsplit

from sink import F_SETPIPE_SZ, SPLICE_MAX, discard, read_head, read_line

MiB = 1 << 20
MANIFEST_MAX = 4 * MiB
TLS_HANDSHAKE = b"\x16"

# Bytes received so far per upload, for PATCH's Range (a client may send the requests of one
# upload on different connections).
_received: dict[str, int] = {}
_received_lock = threading.Lock()


def _answer(sock: socket.socket, status: str, headers: dict[str, str] | None = None) -> None:
    lines = [
        f"HTTP/1.1 {status}",
        "Content-Length: 0",
        "Docker-Distribution-API-Version: registry/2.0",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def _read_body(sock: socket.socket, pending: bytearray, length: int) -> bytes:
    while len(pending) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("peer closed mid-body")
        pending += data
    body = bytes(pending[:length])
    del pending[:length]
    return body


class _Connection(socketserver.BaseRequestHandler):
    def setup(self) -> None:
        self.pipe = os.pipe()
        fcntl.fcntl(self.pipe[1], F_SETPIPE_SZ, SPLICE_MAX)
        self.devnull = os.open(os.devnull, os.O_WRONLY)
        self.buf = memoryview(bytearray(MiB))

    def finish(self) -> None:
        for fd in (*self.pipe, self.devnull):
            os.close(fd)

    def handle(self) -> None:
        sock: socket.socket = self.request
        pending = bytearray()
        if sock.recv(1, socket.MSG_PEEK) == TLS_HANDSHAKE:
            return  # a client trying TLS first (skopeo does): closed at once, as Moorage does
        try:
            while (head := read_head(sock, pending)) is not None:
                self._one(sock, pending, head)
        except ConnectionError:
            return

    def _discard_body(
        self, sock: socket.socket, pending: bytearray, headers: dict[str, str]
    ) -> int:
        """Drop the request body; its length."""
        if headers.get("transfer-encoding") == "chunked":
            total = 0
            while size := int(read_line(sock, pending).split(b";")[0], 16):
                discard(sock, pending, size, self.buf, self.pipe, self.devnull)
                discard(sock, pending, 2, self.buf)  # the CRLF after the chunk
                total += size
            read_line(sock, pending)  # the empty trailer line
            return total
        length = int(headers.get("content-length", "0"))
        discard(sock, pending, length, self.buf, self.pipe, self.devnull)
        return length

    def _one(self, sock: socket.socket, pending: bytearray, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        url = urlsplit(target)
        path = url.path
        if method == "PUT" and "/manifests/" in path:
            length = int(headers.get("content-length", "0"))
            if length > MANIFEST_MAX:
                raise ConnectionError("manifest too big")
            digest = "sha256:" + hashlib.sha256(_read_body(sock, pending, length)).hexdigest()
            _answer(sock, "201 Created", {"Location": path, "Docker-Content-Digest": digest})
            return
        size = self._discard_body(sock, pending, headers)
        if method == "GET" and path.rstrip("/") == "/v2":
            _answer(sock, "200 OK")
        elif method == "POST" and path.endswith("/blobs/uploads/"):
            location = f"{path}{uuid.uuid4().hex}"
            _answer(sock, "202 Accepted", {"Location": location, "Range": "0-0"})
        elif method == "PATCH" and "/blobs/uploads/" in path:
            with _received_lock:
                done = _received[path] = _received.get(path, 0) + size
            _answer(sock, "202 Accepted", {"Location": path, "Range": f"0-{max(done - 1, 0)}"})
        elif method == "PUT" and "/blobs/uploads/" in path:
            with _received_lock:
                _received.pop(path, None)
            digest = parse_qs(url.query).get("digest", [""])[0]
            repo = path.split("/blobs/uploads/")[0]
            location = f"{repo}/blobs/{digest}"
            _answer(sock, "201 Created", {"Location": location, "Docker-Content-Digest": digest})
        else:  # HEAD or GET of a blob or manifest: nothing is ever stored
            _answer(sock, "404 Not Found")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with _Server(("127.0.0.1", args.port), _Connection) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
