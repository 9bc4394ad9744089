"""The blob store's figures, by backend and operation (``moorage_storage_*``; meanings:
docs/operations.md): how long each call took, which failed, and the retries of those that failed.

:class:`ObservedBlobStore` wraps whichever store the composition root picked, so both backends
are measured alike, at the port. On S3 an operation is one request (a listing: one per 1000
keys; a commit or an append: several), so its duration is the S3 request latency, obstore's
own retries included. obstore retries inside its client and tells how often only when it gives
up (:attr:`StorageUnavailable.retries`): a request that succeeded on a retry shows as a slow
one, not as a retry.

Figures are gathered under a lock (the store is called from worker threads, ~0.5 us) and added
to the Prometheus instruments by :meth:`StorageFigures.flush`, once a second and before a
scrape, as the request metrics are (:mod:`moorage.api.request_metrics`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal, ParamSpec, TypeVar

from moorage.oci.digest import Digest
from moorage.storage.port import BlobNotFound, BlobStore, UploadTruncated, UploadWriter
from moorage.telemetry import metrics
from moorage.telemetry.batched_histogram import Observations, add_observations

Backend = Literal["filesystem", "s3"]
# Answers, not failures: the caller asked for something that is not there (or not whole).
_ANSWERS = (BlobNotFound, UploadTruncated, FileNotFoundError)

P = ParamSpec("P")
R = TypeVar("R")


class StorageFigures:
    """One process's pending figures for one backend; safe to call from any thread."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._durations: dict[str, Observations] = {}
        self._errors: dict[str, int] = {}
        self._retries: dict[str, int] = {}

    def record(self, operation: str, seconds: float | None, failure: BaseException | None) -> None:
        """A call of ``seconds`` (None: a stream's failure, already timed when it opened) that
        raised ``failure``, if any."""
        with self._lock:
            if seconds is not None:
                durations = self._durations.get(operation)
                if durations is None:
                    durations = self._durations[operation] = Observations(metrics.STORAGE_BUCKETS)
                durations.add(seconds)
            if failure is not None and not isinstance(failure, _ANSWERS):
                self._errors[operation] = self._errors.get(operation, 0) + 1
                retries = getattr(failure, "retries", 0)
                if retries:
                    self._retries[operation] = self._retries.get(operation, 0) + retries

    def flush(self) -> None:
        with self._lock:
            durations, self._durations = self._durations, {}
            errors, self._errors = self._errors, {}
            retries, self._retries = self._retries, {}
        for operation, observations in durations.items():
            add_observations(metrics.STORAGE_SECONDS.labels(self.backend, operation), observations)
        for operation, count in errors.items():
            metrics.STORAGE_ERRORS.labels(self.backend, operation).inc(count)
        for operation, count in retries.items():
            metrics.STORAGE_RETRIES.labels(self.backend, operation).inc(count)


class _Timed:
    """Times one call (``with``), recording it, and its failure if any, on exit."""

    __slots__ = ("_figures", "_operation", "_start")

    def __init__(self, figures: StorageFigures, operation: str) -> None:
        self._figures = figures
        self._operation = operation
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, kind: object, failure: BaseException | None, traceback: object) -> None:
        if isinstance(failure, GeneratorExit):  # a reader stopped early: not the store's doing
            return
        self._figures.record(self._operation, time.perf_counter() - self._start, failure)


class _ObservedWriter:
    def __init__(self, writer: UploadWriter, figures: StorageFigures) -> None:
        self._writer = writer
        self._figures = figures

    def write(self, data: bytes) -> None:
        with _Timed(self._figures, "write"):
            self._writer.write(data)

    def close(self) -> None:
        with _Timed(self._figures, "close"):
            self._writer.close()

    def discard(self) -> None:
        with _Timed(self._figures, "discard"):
            self._writer.discard()


class ObservedBlobStore:
    """A :class:`BlobStore` that times each call to ``store`` into ``figures``. An operation is
    the method's name (``write``, ``close`` and ``discard`` for an upload writer's); a stream's
    failures count under the call that opened it, its duration is the time to open it."""

    def __init__(self, store: BlobStore, figures: StorageFigures) -> None:
        self._store = store
        self._figures = figures
        self.separate_appends = store.separate_appends
        self.publishes_locally = store.publishes_locally

    def _call(self, operation: str, call: Callable[P, R], *args: P.args, **kw: P.kwargs) -> R:
        with _Timed(self._figures, operation):
            return call(*args, **kw)

    def _stream(self, operation: str, opened: Callable[[], Iterator[R]]) -> Iterator[R]:
        iterator = self._call(operation, opened)
        return self._observed(operation, iterator)

    def _observed(self, operation: str, iterator: Iterator[R]) -> Iterator[R]:
        try:
            yield from iterator  # closing this closes the store's stream too
        except Exception as failure:
            self._figures.record(operation, None, failure)
            raise

    def stat(self, digest: Digest, location: str | None = None) -> int | None:
        return self._call("stat", self._store.stat, digest, location)

    def local_path(self, digest: Digest, location: str | None = None) -> Path | None:
        return self._store.local_path(digest, location)  # no I/O

    def open_local(self, digest: Digest, location: str | None = None) -> int | None:
        # A read by the HTTP server itself: timed as "read" (the time to open it, as for a
        # stream); its reads happen outside the store and are not counted. Not timed at all
        # when the blob is not local (the caller then reads through read, which counts).
        if self._store.local_path(digest, location) is None:
            return None
        return self._call("read", self._store.open_local, digest, location)

    def relative_path(self, digest: Digest, location: str | None = None) -> str | None:
        return self._store.relative_path(digest, location)  # no I/O

    def read(
        self, digest: Digest, first: int = 0, last: int | None = None, location: str | None = None
    ) -> Iterator[bytes]:
        return self._stream("read", lambda: self._store.read(digest, first, last, location))

    def redirect_url(self, digest: Digest, location: str | None = None) -> str | None:
        return self._call("redirect_url", self._store.redirect_url, digest, location)

    def delete(self, digest: Digest, location: str | None = None) -> None:
        self._call("delete", self._store.delete, digest, location)

    def iter_blobs(self) -> Iterator[tuple[Digest, str | None]]:
        return self._stream("iter_blobs", self._store.iter_blobs)

    def open_upload(
        self,
        upload_id: str,
        offset: int,
        claim: str | None = None,
        appends: tuple[str, ...] | None = None,
    ) -> UploadWriter:
        open_upload = self._store.open_upload
        writer = self._call("open_upload", open_upload, upload_id, offset, claim, appends)
        return _ObservedWriter(writer, self._figures)

    def create_upload(self, upload_id: str, claim: str, data: bytes) -> bool:
        return self._call("create_upload", self._store.create_upload, upload_id, claim, data)

    def link_upload(self, upload_id: str) -> str | None:
        return self._call("link_upload", self._store.link_upload, upload_id)

    def open_blob(self, digest: Digest) -> UploadWriter | None:
        writer = self._call("open_blob", self._store.open_blob, digest)
        return None if writer is None else _ObservedWriter(writer, self._figures)

    def upload_size(self, upload_id: str, appends: tuple[str, ...] | None = None) -> int | None:
        return self._call("upload_size", self._store.upload_size, upload_id, appends)

    def read_upload(
        self, upload_id: str, size: int, appends: tuple[str, ...] | None = None
    ) -> Iterator[bytes]:
        return self._stream(
            "read_upload", lambda: self._store.read_upload(upload_id, size, appends)
        )

    def commit_upload(
        self, upload_id: str, digest: Digest, size: int, appends: tuple[str, ...] | None = None
    ) -> str | None:
        commit = self._store.commit_upload
        return self._call("commit_upload", commit, upload_id, digest, size, appends)

    def abort_upload(self, upload_id: str) -> None:
        self._call("abort_upload", self._store.abort_upload, upload_id)

    def stale_uploads(self, modified_before: float) -> Iterator[str]:
        return self._stream("stale_uploads", lambda: self._store.stale_uploads(modified_before))

    def check(self) -> None:
        self._call("check", self._store.check)

    def probe(self) -> None:
        self._call("probe", self._store.probe)
