"""Request lines go out in few writes, each of whole lines and at most PIPE_BUF bytes."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from moorage.telemetry import line_writer
from moorage.telemetry.line_writer import BATCH, CHUNK_BYTES, LineWriter


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[bytes]:
    """Every os.write the writer makes, to a real file standing in for stderr."""
    seen: list[bytes] = []
    real_write = os.write
    target = (tmp_path / "stderr").open("w")
    monkeypatch.setattr(sys, "stderr", target)

    def record(fd: int, data: memoryview) -> int:
        seen.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", record)  # the module calls os.write
    return seen


def same(line: str) -> str:
    return line


async def test_lines_wait_for_the_delay_then_go_out_in_one_write(writes: list[bytes]) -> None:
    writer = LineWriter(same)
    for number in range(3):
        writer.write(f"line {number}")
    assert writes == []
    await asyncio.sleep(line_writer.DELAY_SECONDS * 2)
    assert writes == [b"line 0\nline 1\nline 2\n"]


async def test_a_full_batch_goes_out_at_once_in_chunks_of_whole_lines(
    writes: list[bytes],
) -> None:
    writer: LineWriter[int] = LineWriter(
        lambda number: f"{number:0>299}"
    )  # 300 bytes a line with its newline
    for number in range(BATCH):
        writer.write(number)
    assert len(writes) == -(-BATCH * 300 // (CHUNK_BYTES // 300 * 300)), "not waiting for the timer"
    assert all(len(chunk) <= CHUNK_BYTES and chunk.endswith(b"\n") for chunk in writes)
    assert b"".join(writes) == b"".join(f"{n:0>299}\n".encode() for n in range(BATCH))


def test_without_an_event_loop_a_line_is_written_at_once(writes: list[bytes]) -> None:
    LineWriter(same).write("alone")
    assert writes == [b"alone\n"]


def test_a_stand_in_stderr_gets_the_text(monkeypatch: pytest.MonkeyPatch) -> None:
    class Capture:
        text = ""

        def write(self, text: str) -> None:
            self.text += text

    capture = Capture()
    monkeypatch.setattr(sys, "stderr", capture)
    line_writer.write_lines(["a", "b"])
    assert capture.text == "a\nb\n"
