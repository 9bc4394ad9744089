"""Synchronous OCI distribution client for the benchmark's single-stream transfers.

Bodies are streamed straight from a file on disk with sendfile(2) (zero copy) and pulled
bodies are spliced to /dev/null, so the client costs next to nothing."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import os
import socket
import tarfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

MiB = 1 << 20
CHUNKED_FRAME = 4 * MiB  # size of one HTTP/1.1 chunk in a Transfer-Encoding: chunked body
RECV_BUFFER = 4 * MiB
SPLICE_CHUNK = 1 * MiB
TIMEOUT_S = 900.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCTET = "application/octet-stream"


class RegistryError(RuntimeError):
    pass


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class BlobSource:
    """A blob whose first `size - len(suffix)` bytes are the start of `path` and whose last
    bytes are `suffix` (a few unique bytes, so several distinct big blobs share one file)."""

    path: Path
    size: int
    suffix: bytes
    digest: str

    @property
    def file_part(self) -> int:
        return self.size - len(self.suffix)

    def send_range(self, sock: socket.socket, start: int, end: int) -> None:
        """Send blob[start:end] on sock."""
        if start < self.file_part:
            stop = min(end, self.file_part)
            with self.path.open("rb") as f:
                sent = sock.sendfile(f, offset=start, count=stop - start)
            if sent != stop - start:
                raise RegistryError(f"sendfile sent {sent} of {stop - start} bytes")
        if end > self.file_part:
            lo = max(start, self.file_part) - self.file_part
            sock.sendall(self.suffix[lo : end - self.file_part])


def splice_discard(fd: int, count: int) -> int:
    """Move `count` bytes from fd to /dev/null through a pipe (no copy to user space);
    returns how many were moved (fewer when the peer closes early)."""
    r, w = os.pipe()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), SPLICE_CHUNK)
        moved = 0
        while moved < count:
            n = os.splice(fd, w, min(SPLICE_CHUNK, count - moved))
            if n == 0:
                break
            left = n
            while left:
                left -= os.splice(r, devnull, left)
            moved += n
        return moved
    finally:
        os.close(r)
        os.close(w)
        os.close(devnull)


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)


def with_query(target: str, **params: str) -> str:
    sep = "&" if "?" in target else "?"
    return target + sep + urlencode(params)


class Registry:
    """A registry at http://host:port (OCI distribution API v2)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only plain http:// registry URLs are supported, got {base_url!r}")
        self.base_url = f"http://{parts.netloc}"
        self.host: str = parts.hostname
        self.port: int = parts.port or 80

    # -- plumbing ---------------------------------------------------------------------------

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S, blocksize=MiB)

    def target(self, location: str) -> str:
        """Path and query of a Location header (absolute or relative)."""
        parts = urlsplit(urljoin(self.base_url + "/", location))
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @staticmethod
    def request(
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Response:
        hdrs = dict(headers or {})
        if body is not None or method in ("POST", "PUT", "PATCH"):
            hdrs.setdefault("Content-Length", str(len(body or b"")))
        conn.request(method, target, body=body, headers=hdrs)
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())

    @staticmethod
    def send_blob(
        conn: http.client.HTTPConnection,
        method: str,
        target: str,
        blob: BlobSource,
        start: int,
        end: int,
        *,
        chunked: bool,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send blob[start:end] as the request body, with Content-Length or chunked framing."""
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Content-Type", OCTET)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        else:
            conn.putheader("Content-Length", str(end - start))
        conn.endheaders()
        sock = conn.sock
        assert sock is not None
        send_error: OSError | None = None
        try:
            if chunked:
                for lo in range(start, end, CHUNKED_FRAME):
                    hi = min(end, lo + CHUNKED_FRAME)
                    sock.sendall(b"%x\r\n" % (hi - lo))
                    blob.send_range(sock, lo, hi)
                    sock.sendall(b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                blob.send_range(sock, start, end)
        except OSError as e:  # the server may have answered (an error) and closed early
            send_error = e
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"{method} {target}: {send_error or e}") from e
        return Response(resp.status, resp.headers, resp.read())

    @staticmethod
    def expect(resp: Response, status: int, what: str) -> Response:
        if resp.status != status:
            text = resp.body[:300].decode(errors="replace")
            raise RegistryError(f"{what}: expected {status}, got {resp.status}: {text}")
        return resp

    def location(self, resp: Response, what: str) -> str:
        loc = resp.header("Location")
        if not loc:
            raise RegistryError(f"{what}: no Location header")
        return self.target(loc)

    def start_upload(self, conn: http.client.HTTPConnection, repo: str) -> str:
        resp = self.request(conn, "POST", f"/v2/{repo}/blobs/uploads/")
        self.expect(resp, 202, f"POST /v2/{repo}/blobs/uploads/")
        return self.location(resp, "start upload")

    # -- API --------------------------------------------------------------------------------

    def ping(self) -> int:
        conn = self.connect()
        try:
            return self.request(conn, "GET", "/v2/").status
        finally:
            conn.close()

    def supports_single_post(self, repo: str) -> bool:
        """Does POST /v2/<repo>/blobs/uploads/?digest= with a body complete the upload (201)?
        Distribution 2.8 answers 202 (opens a session) instead; the client then falls back
        to POST + PUT, as the OCI spec tells clients to."""
        data = os.urandom(512)
        conn = self.connect()
        try:
            resp = self.request(
                conn,
                "POST",
                with_query(f"/v2/{repo}/blobs/uploads/", digest=sha256_digest(data)),
                {"Content-Type": OCTET},
                data,
            )
            if resp.status == 201:
                return True
            if resp.status == 202:
                loc = resp.header("Location")
                if loc:  # cancel the session it opened
                    conn.close()
                    conn = self.connect()
                    self.request(conn, "DELETE", self.target(loc))
                return False
            raise RegistryError(f"single-POST probe: unexpected status {resp.status}")
        finally:
            conn.close()

    def push_monolithic(self, repo: str, blob: BlobSource, single_post: bool) -> None:
        """Whole body in one request: POST ?digest= (or POST then PUT ?digest= when the
        registry does not do single-POST uploads)."""
        conn = self.connect()
        try:
            if single_post:
                target = with_query(f"/v2/{repo}/blobs/uploads/", digest=blob.digest)
                resp = self.send_blob(conn, "POST", target, blob, 0, blob.size, chunked=False)
                self.expect(resp, 201, "monolithic POST")
            else:
                loc = self.start_upload(conn, repo)
                resp = self.send_blob(
                    conn,
                    "PUT",
                    with_query(loc, digest=blob.digest),
                    blob,
                    0,
                    blob.size,
                    chunked=False,
                )
                self.expect(resp, 201, "monolithic PUT")
        finally:
            conn.close()

    def push_streamed(self, repo: str, blob: BlobSource) -> None:
        """POST, one PATCH with a chunked body and no Content-Range, then PUT ?digest=."""
        conn = self.connect()
        try:
            loc = self.start_upload(conn, repo)
            resp = self.send_blob(conn, "PATCH", loc, blob, 0, blob.size, chunked=True)
            self.expect(resp, 202, "streamed PATCH")
            loc = self.location(resp, "streamed PATCH")
            resp = self.request(conn, "PUT", with_query(loc, digest=blob.digest))
            self.expect(resp, 201, "closing PUT")
        finally:
            conn.close()

    def push_chunked(self, repo: str, blob: BlobSource, chunk: int) -> None:
        """POST, PATCHes of `chunk` bytes with Content-Range, then PUT ?digest=."""
        conn = self.connect()
        try:
            loc = self.start_upload(conn, repo)
            for lo in range(0, blob.size, chunk):
                hi = min(blob.size, lo + chunk)
                resp = self.send_blob(
                    conn,
                    "PATCH",
                    loc,
                    blob,
                    lo,
                    hi,
                    chunked=False,
                    headers={"Content-Range": f"{lo}-{hi - 1}"},
                )
                self.expect(resp, 202, f"chunk PATCH {lo}-{hi - 1}")
                loc = self.location(resp, "chunk PATCH")
            resp = self.request(conn, "PUT", with_query(loc, digest=blob.digest))
            self.expect(resp, 201, "closing PUT")
        finally:
            conn.close()

    def pull(self, repo: str, digest: str) -> int:
        """GET a blob, discard the bytes, return how many arrived (follows redirects)."""
        target = f"/v2/{repo}/blobs/{digest}"
        registry: Registry = self
        buf = memoryview(bytearray(RECV_BUFFER))
        for _ in range(5):
            conn = registry.connect()
            try:
                conn.request("GET", target)
                resp = conn.getresponse()
                if resp.status in (301, 302, 303, 307, 308):
                    resp.read()
                    loc = resp.getheader("Location") or ""
                    absolute = urljoin(registry.base_url + target, loc)
                    parts = urlsplit(absolute)
                    registry = Registry(f"http://{parts.netloc}")
                    target = registry.target(absolute)
                    continue
                if resp.status != 200:
                    raise RegistryError(f"GET blob: status {resp.status}: {resp.read()[:200]!r}")
                length = resp.length  # None when chunked or unframed
                if length is not None and length > MiB and hasattr(os, "splice"):
                    # Zero copy: bytes already buffered by http.client, then splice(2) the
                    # rest of the body from the socket to /dev/null.
                    head = resp.fp.read(len(resp.fp.peek(1)))
                    sock = conn.sock
                    assert sock is not None
                    sock.setblocking(True)
                    return len(head) + splice_discard(sock.fileno(), length - len(head))
                total = 0
                while True:
                    n = resp.readinto(buf)
                    if not n:
                        break
                    total += n
                return total
            finally:
                conn.close()
        raise RegistryError("GET blob: too many redirects")

    def blob_size(self, repo: str, digest: str) -> int | None:
        """HEAD a blob: its Content-Length, or None when it is not there."""
        conn = self.connect()
        try:
            resp = self.request(conn, "HEAD", f"/v2/{repo}/blobs/{digest}")
            if resp.status != 200:
                return None
            length = resp.header("Content-Length")
            return int(length) if length is not None else None
        finally:
            conn.close()

    def push_small_blob(
        self, conn: http.client.HTTPConnection, repo: str, data: bytes, single_post: bool
    ) -> str:
        digest = sha256_digest(data)
        if single_post:
            target = with_query(f"/v2/{repo}/blobs/uploads/", digest=digest)
            resp = self.request(conn, "POST", target, {"Content-Type": OCTET}, data)
            self.expect(resp, 201, "small blob POST")
        else:
            loc = self.start_upload(conn, repo)
            resp = self.request(
                conn, "PUT", with_query(loc, digest=digest), {"Content-Type": OCTET}, data
            )
            self.expect(resp, 201, "small blob PUT")
        return digest

    def put_manifest(
        self,
        conn: http.client.HTTPConnection,
        repo: str,
        ref: str,
        manifest: bytes,
        media_type: str = OCI_MANIFEST,
    ) -> None:
        resp = self.request(
            conn, "PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": media_type}, manifest
        )
        self.expect(resp, 201, f"PUT manifest {repo}:{ref}")

    def catalog(
        self, conn: http.client.HTTPConnection, target: str
    ) -> tuple[list[str], str | None]:
        """One catalog page: its repositories and the next page's target (Link rel=next)."""
        resp = self.request(conn, "GET", target)
        self.expect(resp, 200, f"GET {target}")
        repos: list[str] = json.loads(resp.body).get("repositories") or []
        link = resp.header("Link")
        nxt = None
        if link and 'rel="next"' in link:
            nxt = self.target(link.split(";")[0].strip().strip("<>"))
        return repos, nxt


@dataclass(frozen=True)
class Image:
    """A small OCI image: config blob, one gzipped tar layer and its manifest."""

    config: bytes
    layer: bytes
    manifest: bytes

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256_digest(self.layer)

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)


def make_image(payload: bytes, name: str = "payload.bin") -> Image:
    """Build a real (if tiny) OCI image whose only layer holds one file with `payload`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    layer = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar_bytes)]},
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(layer), "size": len(layer)}
            ],
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    return Image(config=config, layer=layer, manifest=manifest)
