"""A do-nothing HTTP/1.1 endpoint, run as its own process, to measure how fast the benchmark
client itself can source (upload) and sink (download) bytes over loopback.

Requests with a body are discarded (Content-Length bodies spliced to /dev/null, chunked
ones read) and answered 201 Created; a GET is answered 200 with the contents of
`--get-file`, sent with sendfile(2). Both ends of the sink are thus as cheap as they can be,
so the figures are the client's. Prints the port it listens on, then serves connections one
after another until killed.

    python bench/sink.py --get-file /tmp/source.bin
"""

from __future__ import annotations

import argparse
import fcntl
import os
import socket
import sys
from pathlib import Path

MiB = 1 << 20
SPLICE_MAX = 1 * MiB
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def read_head(sock: socket.socket, pending: bytearray) -> bytes | None:
    while b"\r\n\r\n" not in pending:
        data = sock.recv(65536)
        if not data:
            return None
        pending += data
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    pending[:] = rest
    return head


def discard(
    sock: socket.socket,
    pending: bytearray,
    count: int,
    buf: memoryview,
    pipe: tuple[int, int] | None = None,
    devnull: int = -1,
) -> None:
    """Drop `count` body bytes; with a pipe, splice(2) them to /dev/null without copying."""
    take = min(count, len(pending))
    del pending[:take]
    count -= take
    while count > 0:
        if pipe is not None:
            n = os.splice(sock.fileno(), pipe[1], min(count, SPLICE_MAX))
            if n:
                left = n
                while left:
                    left -= os.splice(pipe[0], devnull, left)
        else:
            n = sock.recv_into(buf, min(count, len(buf)))
        if n == 0:
            raise ConnectionError("peer closed mid-body")
        count -= n


def read_line(sock: socket.socket, pending: bytearray) -> bytes:
    while b"\r\n" not in pending:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("peer closed mid-chunk")
        pending += data
    line, _, rest = bytes(pending).partition(b"\r\n")
    pending[:] = rest
    return line


def serve_connection(
    sock: socket.socket, get_file: Path, pipe: tuple[int, int], devnull: int
) -> None:
    buf = memoryview(bytearray(4 * MiB))
    pending = bytearray()
    while True:
        head = read_head(sock, pending)
        if head is None:
            return
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split(" ", 1)[0]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        if headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(read_line(sock, pending).split(b";")[0], 16)
                discard(sock, pending, size, buf, pipe, devnull)
                discard(sock, pending, 2, buf)  # the CRLF after the chunk
                if size == 0:
                    break
        elif "content-length" in headers:
            discard(sock, pending, int(headers["content-length"]), buf, pipe, devnull)
        if method == "GET":
            size = get_file.stat().st_size
            sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % size
            )
            with get_file.open("rb") as f:
                sock.sendfile(f)
        else:
            sock.sendall(
                b"HTTP/1.1 201 Created\r\nLocation: /v2/sink/blobs/uploads/x\r\n"
                b"Content-Length: 0\r\n\r\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description="Discarding HTTP endpoint for client checks.")
    parser.add_argument("--get-file", type=Path, required=True, help="file to answer GETs with")
    args = parser.parse_args()
    pipe = os.pipe()
    fcntl.fcntl(pipe[1], F_SETPIPE_SZ, SPLICE_MAX)
    devnull = os.open(os.devnull, os.O_WRONLY)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        print(lsock.getsockname()[1], flush=True)
        while True:
            conn, _ = lsock.accept()
            with conn:
                try:
                    serve_connection(conn, args.get_file, pipe, devnull)
                except OSError as e:
                    print(f"sink: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
