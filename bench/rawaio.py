"""A minimal asyncio HTTP/1.1 keep-alive client, for the many-small-requests phases.

It is much cheaper per request than a general-purpose client, which matters on a
two-core machine where the client shares the CPU with the server under test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin, urlsplit

MAX_HEADER = 256 * 1024
OCTET = "application/octet-stream"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class HTTPError(RuntimeError):
    pass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Conn:
    """One keep-alive connection; reconnects when the server closed an idle connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.base = f"http://{host}:{port}"
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> Reply:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in range(2):
            reused = self._writer is not None
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port, limit=MAX_HEADER
                )
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(data)
                await self._writer.drain()
                return await self._read_reply(method)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                await self.close()
                if attempt == 0 and reused and not getattr(e, "partial", b""):
                    continue  # stale keep-alive connection: retry once on a fresh one
                raise HTTPError(f"{method} {target}: {e!r}") from e
        raise AssertionError("unreachable")

    async def _read_reply(self, method: str) -> Reply:
        reader = self._reader
        assert reader is not None
        block = await reader.readuntil(b"\r\n\r\n")
        lines = block[:-4].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            key = k.strip().lower()
            headers[key] = f"{headers[key]}, {v.strip()}" if key in headers else v.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass  # trailers
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        elif "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, headers, body)

    def target(self, location: str) -> str:
        parts = urlsplit(urljoin(self.base + "/", location))
        return parts.path + (f"?{parts.query}" if parts.query else "")


def with_query(target: str, **params: str) -> str:
    return target + ("&" if "?" in target else "?") + urlencode(params)


def expect(reply: Reply, status: int, what: str) -> Reply:
    if reply.status != status:
        raise HTTPError(
            f"{what}: expected {status}, got {reply.status}: "
            f"{reply.body[:200].decode(errors='replace')}"
        )
    return reply


async def upload_blob(conn: Conn, repo: str, data: bytes, digest: str, single_post: bool) -> None:
    """Monolithic upload: POST ?digest= with the body, or POST then PUT ?digest=."""
    if single_post:
        reply = await conn.request(
            "POST",
            with_query(f"/v2/{repo}/blobs/uploads/", digest=digest),
            {"Content-Type": OCTET},
            data,
        )
        expect(reply, 201, "POST ?digest=")
        return
    reply = expect(await conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "POST upload")
    loc = conn.target(reply.headers.get("location", ""))
    reply = await conn.request("PUT", with_query(loc, digest=digest), {"Content-Type": OCTET}, data)
    expect(reply, 201, "PUT ?digest=")


async def upload_blob_patched(conn: Conn, repo: str, data: bytes, digest: str) -> None:
    """The way docker and podman push a layer: POST, one PATCH with the bytes, then PUT
    ?digest= with no body."""
    reply = expect(await conn.request("POST", f"/v2/{repo}/blobs/uploads/"), 202, "POST upload")
    loc = conn.target(reply.headers.get("location", ""))
    reply = await conn.request("PATCH", loc, {"Content-Type": OCTET}, data)
    loc = conn.target(expect(reply, 202, "PATCH").headers.get("location", ""))
    expect(await conn.request("PUT", with_query(loc, digest=digest)), 201, "closing PUT")


async def mount_or_upload(conn: Conn, repo: str, data: bytes, digest: str, source: str) -> None:
    """Cross-repository mount from `source`; if the registry opens an upload session
    instead (202), finish it with a monolithic PUT."""
    target = with_query(f"/v2/{repo}/blobs/uploads/", mount=digest, **{"from": source})
    reply = await conn.request("POST", target)
    if reply.status == 201:
        return
    expect(reply, 202, "POST ?mount=")
    loc = conn.target(reply.headers.get("location", ""))
    reply = await conn.request("PUT", with_query(loc, digest=digest), {"Content-Type": OCTET}, data)
    expect(reply, 201, "PUT ?digest= after mount fallback")


@dataclass
class RateResult:
    count: int
    seconds: float
    latencies_s: list[float] = field(default_factory=list)
    client_cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)


async def _small_blob_push(
    host: str,
    port: int,
    repo: str,
    *,
    concurrency: int,
    seconds: float,
    max_blobs: int,
    blob_size: int,
    single_post: bool,
    patch: bool = False,
) -> RateResult:
    result = RateResult(0, 0.0)
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal issued
        conn = Conn(host, port)
        try:
            while time.perf_counter() < deadline and issued < max_blobs:
                issued += 1
                data = os.urandom(blob_size)
                digest = "sha256:" + hashlib.sha256(data).hexdigest()
                t0 = time.perf_counter()
                try:
                    if patch:
                        await upload_blob_patched(conn, repo, data, digest)
                    else:
                        await upload_blob(conn, repo, data, digest, single_post)
                except (HTTPError, OSError) as e:
                    result.errors.append(str(e))
                    await conn.close()
                    if len(result.errors) > 20:
                        raise
                    continue
                result.latencies_s.append(time.perf_counter() - t0)
                result.count += 1
        finally:
            await conn.close()

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    result.client_cpu_s = time.process_time() - cpu0
    return result


def small_blob_push(
    host: str,
    port: int,
    repo: str,
    *,
    concurrency: int,
    seconds: float,
    max_blobs: int,
    blob_size: int,
    single_post: bool,
    patch: bool = False,
) -> RateResult:
    """Push distinct random blobs of blob_size bytes from `concurrency` workers until
    `seconds` have passed or `max_blobs` were issued; monolithic, or with ``patch`` as
    POST + PATCH + PUT."""
    return asyncio.run(
        _small_blob_push(
            host,
            port,
            repo,
            concurrency=concurrency,
            seconds=seconds,
            max_blobs=max_blobs,
            blob_size=blob_size,
            single_post=single_post,
            patch=patch,
        )
    )


async def _create_repos(
    host: str,
    port: int,
    repos: list[str],
    *,
    source: str,
    blobs: list[tuple[bytes, str]],
    manifest: bytes,
    tag: str,
    concurrency: int,
) -> RateResult:
    result = RateResult(0, 0.0)
    todo = iter(repos)
    start = time.perf_counter()

    async def worker() -> None:
        conn = Conn(host, port)
        try:
            for repo in todo:
                for data, digest in blobs:
                    await mount_or_upload(conn, repo, data, digest, source)
                reply = await conn.request(
                    "PUT", f"/v2/{repo}/manifests/{tag}", {"Content-Type": OCI_MANIFEST}, manifest
                )
                expect(reply, 201, f"PUT manifest {repo}:{tag}")
                result.count += 1
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


def create_repos(
    host: str,
    port: int,
    repos: list[str],
    *,
    source: str,
    blobs: list[tuple[bytes, str]],
    manifest: bytes,
    tag: str,
    concurrency: int,
) -> RateResult:
    """Create each repository by mounting `blobs` from `source` and putting `manifest`."""
    return asyncio.run(
        _create_repos(
            host,
            port,
            repos,
            source=source,
            blobs=blobs,
            manifest=manifest,
            tag=tag,
            concurrency=concurrency,
        )
    )
