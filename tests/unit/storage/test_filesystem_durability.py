"""Filesystem blob store: what must be durable before a blob is visible."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from moorage.oci.digest import Digest
from moorage.storage import filesystem
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import UploadTruncated


def _digest(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def test_a_new_shard_directory_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    synced: list[Path] = []
    real = filesystem._fsync_dir

    def fsync_dir(path: Path) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(filesystem, "_fsync_dir", fsync_dir)
    writer = store.open_upload("a" * 32, 0)
    writer.write(b"blob")
    writer.close()
    store.commit_upload("a" * 32, _digest(b"blob"), 4)
    assert tmp_path / "blobs" / "sha256" in synced  # the shard's entry in its parent
    assert store.stat(_digest(b"blob")) == 4


def test_committing_more_bytes_than_the_upload_holds_is_refused(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path)
    writer = store.open_upload("b" * 32, 0)
    writer.write(b"short")
    writer.close()
    with pytest.raises(UploadTruncated):
        store.commit_upload("b" * 32, _digest(b"short\0\0\0"), 8)
    assert store.stat(_digest(b"short\0\0\0")) is None


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[str]) -> None:
    """Record each call of ``os.<name>`` (still made) in ``calls``."""
    real = getattr(os, name)

    def counted(fd: int) -> None:
        calls.append(name)
        real(fd)

    monkeypatch.setattr(os, name, counted)


def test_bytes_past_the_recorded_size_are_cut_and_the_cut_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    writer = store.open_upload("c" * 32, 0)
    writer.write(b"blob and more")  # an append that was cut short before it was recorded
    writer.close()
    synced: list[str] = []
    _count_calls(monkeypatch, "fsync", synced)
    store.commit_upload("c" * 32, _digest(b"blob"), 4)
    assert store.stat(_digest(b"blob")) == 4
    # The truncation, the new shard directory's entry and the rename: each flushed.
    assert len(synced) == 3


def test_an_upload_of_exactly_its_recorded_size_is_not_flushed_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    flushed: list[str] = []
    _count_calls(monkeypatch, "fdatasync", flushed)
    _count_calls(monkeypatch, "fsync", flushed)
    writer = store.open_upload("d" * 32, 0)
    writer.write(b"blob")
    writer.close()  # the writer's fdatasync: the bytes are durable before they are recorded
    store.commit_upload("d" * 32, _digest(b"blob"), 4)
    # One flush of the bytes, then the directories (the new shard's entry, the rename).
    assert flushed == ["fdatasync", "fsync", "fsync"]


def test_a_first_append_is_synced_and_never_replaces_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FilesystemBlobStore(tmp_path)
    flushed: list[str] = []
    _count_calls(monkeypatch, "fdatasync", flushed)
    assert store.create_upload("e" * 32, "f1", b"bytes")
    assert flushed == ["fdatasync"]
    assert not store.create_upload("e" * 32, "f2", b"other bytes")
    assert (tmp_path / "uploads" / ("e" * 32)).read_bytes() == b"bytes"


def test_an_append_at_zero_writes_a_new_file_not_the_one_a_late_writer_has_open(
    tmp_path: Path,
) -> None:
    """A request starting the upload at offset 0 unlinks what was there: a first PATCH that
    lost the race to it (or a displaced holder) still writing its old file changes nothing."""
    store = FilesystemBlobStore(tmp_path)
    late = store.open_upload("e" * 32, 0)
    holder = store.open_upload("e" * 32, 0)
    holder.write(b"the holder's")
    late.write(b"late bytes, longer than the holder's")
    late.close()
    holder.close()
    assert (tmp_path / "uploads" / ("e" * 32)).read_bytes() == b"the holder's"
