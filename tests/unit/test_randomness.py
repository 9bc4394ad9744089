"""random_hex: the kernel's random bytes, handed out from a block, never twice."""

from __future__ import annotations

import os

from moorage.randomness import random_hex


def test_ids_are_hex_of_the_asked_length_and_never_repeat() -> None:
    ids = [random_hex(16) for _ in range(2000)]  # several blocks' worth
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == len(ids)
    assert len(random_hex(8)) == 16


def test_a_forked_child_never_hands_out_the_parents_next_bytes() -> None:
    """granian forks its workers: two workers drawing the same block would issue the same
    upload ids."""
    random_hex(16)  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave at once
        os.write(write, random_hex(16).encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 32
    assert child_id != random_hex(16)
