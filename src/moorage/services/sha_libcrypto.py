"""SHA-256 and SHA-512 from OpenSSL's libcrypto through ctypes, with a state that can be saved.

Why not hashlib: its state cannot be saved. Why not ``rehashes`` alone: it holds the GIL while
it hashes, so the event loop cannot receive the next body bytes while a worker thread hashes
the last ones. ctypes releases the GIL for the length of every foreign call, and the low-level
``SHA256_*`` / ``SHA512_*`` functions (deprecated in OpenSSL 3 but exported, and the same
block functions hashlib ends in) keep their whole state in a public, fixed struct
(``SHA256_CTX`` / ``SHA512_CTX`` in openssl/sha.h): those bytes are the state to save.

The struct is machine layout (native-endian words). What is saved is not the raw memory but its
fields in a fixed little-endian form (``_Layout``), so a state saved on one host resumes on any
other, whatever its byte order. The layout is checked once when libcrypto is loaded
(:func:`load`): a state saved at an odd offset must resume to hashlib's digest, or nothing here
is used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

# Prepended to every saved state, so the saved form can change later and states written by
# ``rehashes`` (older releases) are told apart: see services/hashing.py.
TAG = b"sha-ossl-1:"


class LibcryptoUnavailable(RuntimeError):
    """libcrypto could not be loaded, lacks the SHA functions, or its struct is not the one
    this module knows."""


class _Layout:
    """One algorithm's context struct: ``h`` (8 words), ``Nl``, ``Nh`` (bit count, same word
    size), the partial block as bytes (byte-order free: OpenSSL fills it byte by byte), then
    ``num`` and ``md_len`` (unsigned int)."""

    def __init__(self, name: str, word: str, block: int, digest_size: int) -> None:
        self.name = name
        self.block = block
        self.digest_size = digest_size
        fields = f"8{word}2{word}{block}s2I"  # word: struct's code of SHA_LONG or SHA_LONG64
        self._native = struct.Struct("=" + fields)
        self._saved = struct.Struct("<" + fields)
        self.size = self._native.size
        # Where this machine's layout is the saved one (every little-endian host), the bytes
        # are copied as they are: a state is saved at the end of every request.
        self._same = sys.byteorder == "little"

    def canonical(self, raw: bytes) -> bytes:
        return raw if self._same else self._saved.pack(*self._native.unpack(raw))

    def native(self, saved: bytes) -> bytes:
        return saved if self._same else self._native.pack(*self._saved.unpack(saved))


SHA256 = _Layout("SHA256", "I", 64, 32)
SHA512 = _Layout("SHA512", "Q", 128, 64)
LAYOUTS = {"sha256": SHA256, "sha512": SHA512}


@dataclass(frozen=True)
class _Functions:
    update: ctypes._NamedFuncPointer
    final: ctypes._NamedFuncPointer


class Libcrypto:
    """The bound functions of one loaded libcrypto."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._functions: dict[str, _Functions] = {}
        # A fresh context, copied by new(): cheaper than calling SHA*_Init each time.
        self._initial: dict[str, bytes] = {}
        for algorithm, layout in LAYOUTS.items():
            try:
                init = getattr(library, f"{layout.name}_Init")
                update = getattr(library, f"{layout.name}_Update")
                final = getattr(library, f"{layout.name}_Final")
            except AttributeError as error:
                raise LibcryptoUnavailable(f"libcrypto has no {error}") from None
            init.argtypes, init.restype = [ctypes.c_void_p], ctypes.c_int
            update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
            update.restype = ctypes.c_int
            final.argtypes, final.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_int
            self._functions[algorithm] = _Functions(update, final)
            context = ctypes.create_string_buffer(layout.size)
            init(context)
            self._initial[algorithm] = context.raw

    def new(self, algorithm: str) -> LibcryptoHasher:
        layout = LAYOUTS[algorithm]
        context = ctypes.create_string_buffer(self._initial[algorithm], layout.size)
        return LibcryptoHasher(layout, self._functions[algorithm], context)

    def resume(self, algorithm: str, state: bytes) -> LibcryptoHasher:
        layout = LAYOUTS[algorithm]
        saved = state[len(TAG) :]
        if not state.startswith(TAG) or len(saved) != layout.size:
            raise ValueError(f"not a saved {algorithm} state of this format")
        context = ctypes.create_string_buffer(layout.native(saved), layout.size)
        return LibcryptoHasher(layout, self._functions[algorithm], context)


class LibcryptoHasher:
    """A running SHA-256/512 (services/hashing.py's ResumableHasher)."""

    def __init__(
        self, layout: _Layout, functions: _Functions, context: ctypes.Array[ctypes.c_char]
    ) -> None:
        self._layout = layout
        self._functions = functions
        self._context = context

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is bytes:
            # The usual case: the bytes' own buffer, no copy; the object is alive for the whole
            # call, which runs without the GIL.
            self._functions.update(self._context, data, len(data))
            return
        view = memoryview(data)
        if view.readonly or not view.c_contiguous:
            view = memoryview(bytearray(view))
        pointer = (ctypes.c_char * view.nbytes).from_buffer(view)
        self._functions.update(self._context, pointer, view.nbytes)

    def finalize(self) -> str:
        # On a copy: SHA*_Final wipes the context, and a hasher stays usable after
        # finalize (as hashlib's hexdigest).
        context = ctypes.create_string_buffer(self._context.raw, self._layout.size)
        digest = ctypes.create_string_buffer(self._layout.digest_size)
        self._functions.final(digest, context)
        return digest.raw.hex()

    def serialize(self) -> bytes:
        return TAG + self._layout.canonical(self._context.raw)


def _candidates() -> list[str]:
    """The libcrypto that hashlib is linked to (already in this process once _hashlib is
    imported), then the one the system's linker would find."""
    found: list[str] = []
    try:
        import _hashlib  # noqa: F401  (loads libcrypto into this process)

        for line in Path("/proc/self/maps").read_text().splitlines():
            path = line.split(maxsplit=5)[-1]
            if "/libcrypto." in path and path not in found:
                found.append(path)
    except (ImportError, OSError):
        pass
    name = ctypes.util.find_library("crypto")
    if name is not None:
        found.append(name)
    return found


def _check(libcrypto: Libcrypto) -> None:
    """Resume a state saved mid-block and compare with hashlib: proves the struct layout."""
    data = bytes(range(256)) * 3
    for algorithm in LAYOUTS:
        hasher = libcrypto.new(algorithm)
        hasher.update(data[:131])
        resumed = libcrypto.resume(algorithm, hasher.serialize())
        resumed.update(data[131:])
        if resumed.finalize() != hashlib.new(algorithm, data).hexdigest():
            raise LibcryptoUnavailable(f"libcrypto's {algorithm} context is not the one known")


def load() -> Libcrypto:
    """The first libcrypto that loads and passes :func:`_check`."""
    errors: list[str] = []
    for path in _candidates():
        try:
            libcrypto = Libcrypto(ctypes.CDLL(path))
            _check(libcrypto)
        except (OSError, LibcryptoUnavailable) as error:
            errors.append(f"{path}: {error}")
            continue
        return libcrypto
    raise LibcryptoUnavailable(
        "cannot use OpenSSL's libcrypto for resumable SHA-256/512 (install libssl3 or the "
        "OpenSSL Python is linked to): " + ("; ".join(errors) or "none found")
    )
