"""The resumable hashers: right digests, states that resume anywhere (including those saved by
earlier releases with rehashes), and hashing that lets other threads run."""

from __future__ import annotations

import hashlib
import struct
import sys
import threading

import pytest
import rehashes
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.services import sha_libcrypto
from moorage.services.hashing import new_hasher, resume_hasher

ALGORITHMS = ["sha256", "sha512"]

# FIPS 180-2 examples (one block, two blocks, a million "a").
VECTORS = {
    ("sha256", b""): "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ("sha256", b"abc"): "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    (
        "sha256",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    ): "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    (
        "sha256",
        b"a" * 1_000_000,
    ): "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    ("sha512", b"abc"): (
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
    ),
    ("sha512", b"a" * 1_000_000): (
        "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
        "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"
    ),
}

DATA = bytes(range(256)) * 20  # 5120 bytes: several sha512 blocks and a partial one


@pytest.mark.parametrize(("algorithm", "message"), list(VECTORS))
def test_known_vectors(algorithm: str, message: bytes) -> None:
    hasher = new_hasher(algorithm)
    hasher.update(message)
    assert hasher.finalize() == VECTORS[algorithm, message]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("split", [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 4097])
def test_resume_at_odd_split_points(algorithm: str, split: int) -> None:
    """Saved around the block and padding boundaries, a state resumes to hashlib's digest."""
    first = new_hasher(algorithm)
    first.update(DATA[:split])
    resumed = resume_hasher(algorithm, first.serialize())
    resumed.update(DATA[split:])
    assert resumed.finalize() == hashlib.new(algorithm, DATA).hexdigest()


@settings(max_examples=100, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    cuts=st.lists(st.integers(min_value=0, max_value=len(DATA)), max_size=6),
)
def test_resumed_many_times(algorithm: str, cuts: list[int]) -> None:
    """Every request of an upload resumes the last one's state: any number of times, anywhere."""
    state = new_hasher(algorithm).serialize()
    start = 0
    for cut in [*sorted(cuts), len(DATA)]:
        hasher = resume_hasher(algorithm, state)
        hasher.update(DATA[start:cut])
        state, start = hasher.serialize(), cut
    assert resume_hasher(algorithm, state).finalize() == hashlib.new(algorithm, DATA).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_finalize_leaves_the_hasher_usable(algorithm: str) -> None:
    hasher = new_hasher(algorithm)
    hasher.update(b"ab")
    assert hasher.finalize() == hasher.finalize() == hashlib.new(algorithm, b"ab").hexdigest()
    hasher.update(b"c")
    assert hasher.finalize() == hashlib.new(algorithm, b"abc").hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_any_bytes_like_body(algorithm: str) -> None:
    """The protocol says bytes, but a body may come as any buffer: each is hashed as is."""
    hasher = sha_libcrypto.load().new(algorithm)
    hasher.update(bytearray(b"a"))
    hasher.update(memoryview(b"xbcx")[1:3])  # read-only, not a bytes object
    hasher.update(memoryview(bytearray(b"d")))
    assert hasher.finalize() == hashlib.new(algorithm, b"abcd").hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("split", [0, 3, 64, 200])
def test_states_saved_by_rehashes_still_resume(algorithm: str, split: int) -> None:
    """An upload in flight across the upgrade: its state was saved by rehashes."""
    old = {"sha256": rehashes.PySha256, "sha512": rehashes.PySha512}[algorithm]()
    old.update(DATA[:split])
    resumed = resume_hasher(algorithm, old.serialize())
    resumed.update(DATA[split:])
    assert resumed.finalize() == hashlib.new(algorithm, DATA).hexdigest()
    # ... and keeps its format to the end of the upload, so the next request resumes it too.
    again = resume_hasher(algorithm, resumed.serialize())
    assert again.finalize() == hashlib.new(algorithm, DATA).hexdigest()


def test_new_states_are_tagged_and_little_endian() -> None:
    """The saved form is fixed, not this machine's memory: the first word of a fresh sha256
    is H0 = 0x6a09e667, written little-endian after the tag."""
    state = new_hasher("sha256").serialize()
    assert state.startswith(sha_libcrypto.TAG)
    assert len(state) == len(sha_libcrypto.TAG) + 112
    assert struct.unpack_from("<I", state, len(sha_libcrypto.TAG)) == (0x6A09E667,)
    assert len(new_hasher("sha512").serialize()) == len(sha_libcrypto.TAG) + 216


def test_a_damaged_state_is_refused() -> None:
    with pytest.raises(ValueError):
        resume_hasher("sha256", sha_libcrypto.TAG + b"\0" * 20)
    with pytest.raises(ValueError):  # a sha256 state is not a sha512 one
        resume_hasher("sha512", new_hasher("sha256").serialize())


def test_other_threads_run_while_it_hashes() -> None:
    """The GIL is released during a hash: the waiting thread runs while the update is still
    going. (Python would hand the GIL over only after the switch interval, made longer here
    than the hash takes: a hasher that held the GIL, as rehashes does, lets the main thread
    run only once the hashing thread has ended.)"""
    body = b"\0" * (64 << 20)
    started = threading.Event()
    done: list[bool] = []

    def hash_body() -> None:
        hasher = new_hasher("sha256")
        started.set()
        hasher.update(body)
        done.append(True)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30)
    try:
        worker = threading.Thread(target=hash_body)
        worker.start()
        started.wait()
        ran_meanwhile = not done
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ran_meanwhile


@pytest.mark.parametrize("layout", [sha_libcrypto.SHA256, sha_libcrypto.SHA512])
def test_the_byte_order_conversion_keeps_every_field(
    layout: sha_libcrypto._Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a big-endian host the words are swapped to and from the saved form; here (where the
    saved form is the native one) that path is forced and must give back the same bytes."""
    libcrypto = sha_libcrypto.load()
    algorithm = layout.name.lower()
    hasher = libcrypto.new(algorithm)
    hasher.update(DATA[:77])
    saved = hasher.serialize()[len(sha_libcrypto.TAG) :]
    monkeypatch.setattr(layout, "_same", False)
    assert layout.native(saved) == saved == layout.canonical(saved)
    resumed = libcrypto.resume(algorithm, sha_libcrypto.TAG + saved)
    resumed.update(DATA[77:])
    assert resumed.finalize() == hashlib.new(algorithm, DATA).hexdigest()
