"""Users and passwords from an Apache htpasswd file: checking them (``HtpasswdAuthenticator``)
and editing the file (``add_user``, ``set_password``, ``remove_user``, ``list_users``).

A registry that replaces an nginx or Apache ``auth_basic`` front must take the operator's file as
it is, so every format Apache's ``htpasswd`` writes is verified: ``$apr1$`` (its default),
``$2y$`` bcrypt (``-B``), ``{SHA}`` (``-s``), DES crypt (``-d``) and SHA-256/512 crypt (``-2``,
``-5``). A plaintext entry (``-p``) is never accepted: it is logged and ignored. The hash
algorithms are passlib's (the ``libpass`` distribution); the file format is read the way Apache's
``mod_authn_file`` reads it: ``user:hash``, anything after a further ``:`` ignored, ``#`` comments
and blank lines skipped, the first entry for a user wins. New entries are bcrypt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import secrets
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from passlib.context import CryptContext  # type: ignore[import-untyped]

from moorage.auth.credential_cache import CredentialCache
from moorage.auth.identity import Identity, Via
from moorage.auth.usernames import validate_username

log = logging.getLogger("moorage.auth")

# Every scheme htpasswd writes except plaintext. `md5_crypt` ($1$) is what `openssl passwd -1`
# writes and Apache verifies through the system crypt(). `2y` is the bcrypt prefix Apache's
# libapr recognises; `2b` hashes from elsewhere verify too.
_CONTEXT = CryptContext(
    schemes=[
        "bcrypt",
        "apr_md5_crypt",
        "sha256_crypt",
        "sha512_crypt",
        "md5_crypt",
        "ldap_sha1",
        "des_crypt",
    ],
    bcrypt__ident="2y",
)

# bcrypt cost of entries we write: 2^10 rounds is about 2-60 ms per check depending on the CPU,
# paid once per client per cache TTL (see credential_cache).
NEW_ENTRY_BCRYPT_COST = 10
# When a file has no usable entry, unknown users are checked against a hash of this kind.
_DEFAULT_PROFILE = ("bcrypt", NEW_ENTRY_BCRYPT_COST)
# bcrypt only ever reads this many bytes of a password; Apache truncates silently, and the
# `bcrypt` package (>= 5) refuses longer input.
BCRYPT_MAX_PASSWORD_BYTES = 72


class HtpasswdFileError(Exception):
    """The htpasswd file cannot be read or written; the message names the file."""


class UserExistsError(ValueError):
    """``add_user`` for a user already in the file."""


class UserNotFoundError(ValueError):
    """``set_password`` or ``remove_user`` for a user not in the file."""


# --- the file format (pure) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HtpasswdLine:
    """One line of the file, kept byte for byte so that rewriting preserves it.

    ``user`` is None for comments and blank lines, and for malformed ones (``malformed``).
    """

    raw: bytes
    user: str | None = None
    hash: str = ""
    malformed: bool = False


def parse_lines(data: bytes) -> list[HtpasswdLine]:
    """Split a file's bytes into lines, each with its user and hash when it has them."""
    return [_parse_line(raw) for raw in data.splitlines(keepends=True)]


def _parse_line(raw: bytes) -> HtpasswdLine:
    text = raw.strip()
    if not text or text.startswith(b"#"):
        return HtpasswdLine(raw)
    user, sep, rest = text.partition(b":")
    if not sep or not user:
        return HtpasswdLine(raw, malformed=True)
    try:
        return HtpasswdLine(raw, user.decode(), rest.split(b":", 1)[0].decode())
    except UnicodeDecodeError:
        return HtpasswdLine(raw, malformed=True)


def validate_new_password(password: str) -> None:
    """Raise ValueError unless ``password`` can be stored as bcrypt without loss."""
    if not password:
        raise ValueError("password must not be empty")
    if "\0" in password:
        raise ValueError("password must not contain NUL characters")
    if len(password.encode()) > BCRYPT_MAX_PASSWORD_BYTES:
        raise ValueError(
            f"password must be at most {BCRYPT_MAX_PASSWORD_BYTES} bytes (bcrypt ignores the rest)"
        )


def hash_password(password: str) -> str:
    """A new entry's hash: ``$2y$`` bcrypt at ``NEW_ENTRY_BCRYPT_COST``."""
    validate_new_password(password)
    handler = _CONTEXT.handler("bcrypt").using(rounds=NEW_ENTRY_BCRYPT_COST, ident="2y")
    return str(handler.hash(password))


def verify_password(password: str, hashed: str) -> bool:
    """True when ``password`` matches ``hashed``; False for any hash we do not accept."""
    secret = password.encode("utf-8", "surrogatepass")
    if hashed.startswith("$2"):
        secret = secret[:BCRYPT_MAX_PASSWORD_BYTES]
    try:
        return bool(_CONTEXT.verify(secret, hashed))
    except ValueError:  # unrecognised or malformed hash, or a NUL in a bcrypt password
        return False


def _profile(hashed: str) -> tuple[str, int | None] | None:
    """The scheme and cost of a hash we accept, or None (plaintext, unknown, malformed)."""
    handler = _CONTEXT.identify(hashed, resolve=True)
    if handler is None:
        return None
    try:
        parsed = handler.from_string(hashed)
    except ValueError:
        return None
    rounds = getattr(parsed, "rounds", None)
    return str(handler.name), rounds if isinstance(rounds, int) else None


def _dummy_hash(profile: tuple[str, int | None]) -> str:
    """A hash of a random password, as slow to check as a real entry of ``profile``."""
    scheme, rounds = profile
    handler = _CONTEXT.handler(scheme)
    if rounds is not None:
        handler = handler.using(rounds=rounds)
    return str(handler.hash(secrets.token_urlsafe(16)))


# --- reading the file for authentication ---------------------------------------------------

_Fingerprint = tuple[int, int, int, int, int]

# A file changed again within the same filesystem timestamp tick (coarse: a few ms, or a whole
# second on some filesystems) keeps its stat fingerprint when its size does not change, as with
# a new bcrypt hash of the same cost. So, as git does for its index, a load that happened within
# this window of the file's mtime is not trusted: until a later read is clear of the window, the
# file's bytes are re-read and compared on each check.
_RACY_WINDOW_NS = 2_000_000_000


def _fingerprint(st: os.stat_result) -> _Fingerprint:
    # ctime moves on chmod/chown too, so fixing a file's permissions triggers a reload.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One load of the file; replaced whole, never mutated, so readers need no lock."""

    fingerprint: _Fingerprint
    read_at_ns: int  # wall clock when the read started, comparable with st_mtime_ns
    content: bytes
    hashes: Mapping[str, str | None]  # None: an entry we refuse (plaintext, malformed hash)
    dummy_hash: str

    def current_for(self, fingerprint: _Fingerprint) -> bool:
        """True when a file with ``fingerprint`` is certainly the one this snapshot read."""
        mtime_ns = self.fingerprint[3]
        return fingerprint == self.fingerprint and self.read_at_ns - mtime_ns >= _RACY_WINDOW_NS


def _read(path: Path) -> tuple[_Fingerprint, int, bytes]:
    """The file's fingerprint, when the read started, and its bytes; raises OSError."""
    read_at_ns = time.time_ns()
    with path.open("rb") as file:
        fingerprint = _fingerprint(os.fstat(file.fileno()))
        return fingerprint, read_at_ns, file.read()


def _index(path: Path, data: bytes) -> tuple[dict[str, str | None], str]:
    """Each user's hash, and the dummy hash for unknown users. Logs each refused line (its
    number and user, never its hash or content: a malformed line may be a password)."""
    hashes: dict[str, str | None] = {}
    profiles: Counter[tuple[str, int | None]] = Counter()
    for number, line in enumerate(parse_lines(data), start=1):
        if line.malformed:
            log.warning(
                "htpasswd line ignored: not user:hash", extra={"path": str(path), "line": number}
            )
        if line.user is None or line.user in hashes:
            continue
        profile = _profile(line.hash)
        if profile is None:
            log.warning(
                "htpasswd entry refused: not a supported hash (plaintext is never accepted)",
                extra={"path": str(path), "line": number, "user": line.user},
            )
        else:
            profiles[profile] += 1
        hashes[line.user] = line.hash if profile is not None else None
    common = profiles.most_common(1)[0][0] if profiles else _DEFAULT_PROFILE
    return hashes, _dummy_hash(common)


# How stale the file may be for a request whose credentials were verified recently.
RECALL_RECHECK_SECONDS = 1.0


class HtpasswdAuthenticator:
    """``Authenticator`` over an htpasswd file, reloaded when the file changes on disk.

    Every call stats the file (about a microsecond); a new inode, size, mtime or ctime reloads
    it and empties the credential cache, so a changed or removed password stops working at
    once. If the file then cannot be read, the last good contents stay in force and a warning
    is logged once. An unknown user costs one check against a dummy hash of the scheme and cost
    most entries use, like a wrong password. Safe to call from many threads.
    """

    def __init__(
        self,
        path: Path | str,
        cache: CredentialCache | None = None,
        *,
        recall_recheck_seconds: float = RECALL_RECHECK_SECONDS,
    ) -> None:
        self._path = Path(path)
        self._cache = cache if cache is not None else CredentialCache()
        self._recall_recheck = recall_recheck_seconds
        self._recall_checked_at = -math.inf
        # Guards reloads and the snapshot/cache pair: a success is cached only if the snapshot
        # it was checked against is still the current one.
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._failed_fingerprint: _Fingerprint | None = None
        try:
            fingerprint, read_at_ns, data = _read(self._path)
        except OSError as error:
            raise HtpasswdFileError(
                f"cannot read htpasswd file {self._path}: {error.strerror or error}"
            ) from None
        self._snapshot = _Snapshot(fingerprint, read_at_ns, data, *_index(self._path, data))

    def authenticate_password(self, username: str, password: str) -> Identity | None:
        snapshot = self._current()
        if self._cache.contains(username, password):
            return Identity(username, Via.PASSWORD)
        stored = snapshot.hashes.get(username)
        # Check against the dummy when there is no usable entry, so the time is the same.
        matched = verify_password(password, stored if stored is not None else snapshot.dummy_hash)
        if not matched or stored is None:
            return None
        with self._lock:
            if self._snapshot is snapshot:
                self._cache.add(username, password)
        return Identity(username, Via.PASSWORD)

    def recall(self, username: str, password: str) -> Identity | None:
        # A changed file empties the cache first (_recent). authenticate_password, the path of
        # every new login, always looks.
        self._recent()
        if self._cache.contains(username, password):
            return Identity(username, Via.PASSWORD)
        return None

    def has_user(self, username: str) -> bool:
        """Whether ``username`` has an entry we accept (one dict probe, for per-request use)."""
        return self._current().hashes.get(username) is not None

    def has_user_recently(self, username: str) -> bool:
        """:meth:`has_user` as of the file at most ``recall_recheck_seconds`` ago, for checks
        made on every request (a bearer token's or an API token's user)."""
        return self._recent().hashes.get(username) is not None

    def _recent(self) -> _Snapshot:
        # On per-request paths the file is looked at no more than every RECALL_RECHECK_SECONDS:
        # its stat cost ~3 of the ~10 us a cached Basic login takes.
        now = time.monotonic()
        if now - self._recall_checked_at >= self._recall_recheck:
            self._recall_checked_at = now
            return self._current()
        return self._snapshot

    def stored_hash(self, username: str) -> str | None:
        """The hash ``username`` has in the file now (None: no accepted entry); it changes
        when the password does. Never to be logged or sent anywhere."""
        return self._current().hashes.get(username)

    def users(self) -> list[str]:
        """Users with an entry we accept, as of the latest load."""
        return [user for user, hashed in self._current().hashes.items() if hashed is not None]

    def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        try:
            fingerprint = _fingerprint(os.stat(self._path))
        except OSError as error:
            self._keep_last_good(error)
            return snapshot
        if snapshot.current_for(fingerprint) or fingerprint == self._failed_fingerprint:
            return snapshot
        with self._lock:
            return self._reload(fingerprint)

    def _reload(self, fingerprint: _Fingerprint) -> _Snapshot:
        """Called with the lock held, when the file may differ from the current snapshot."""
        old = self._snapshot
        if old.current_for(fingerprint) or fingerprint == self._failed_fingerprint:
            return old  # another thread reloaded (or failed to) while we waited
        try:
            fingerprint, read_at_ns, data = _read(self._path)
        except OSError as error:
            self._failed_fingerprint = fingerprint
            self._keep_last_good(error)
            return old
        self._failed_fingerprint = None
        self._problem = None
        if data == old.content:
            # Same users and hashes: keep them (and the cache), note the newer read.
            self._snapshot = dataclasses.replace(
                old, fingerprint=fingerprint, read_at_ns=read_at_ns
            )
            return self._snapshot
        self._snapshot = _Snapshot(fingerprint, read_at_ns, data, *_index(self._path, data))
        self._cache.clear()
        log.info(
            "htpasswd file reloaded",
            extra={"path": str(self._path), "users": len(self._snapshot.hashes)},
        )
        return self._snapshot

    def _keep_last_good(self, error: OSError) -> None:
        problem = error.strerror or type(error).__name__
        # Once per new problem, not once per request. Unlocked on the stat path: at worst a
        # duplicate warning.
        if problem != self._problem:
            self._problem = problem
            log.warning(
                "htpasswd file unreadable, keeping its last good contents",
                extra={"path": str(self._path), "error": problem},
            )

    def __repr__(self) -> str:
        return f"HtpasswdAuthenticator({str(self._path)!r})"


# --- editing the file ----------------------------------------------------------------------


def list_users(path: Path | str) -> list[str]:
    """Every user in the file, in file order (including entries the registry refuses)."""
    lines = _read_for_edit(Path(path), missing_ok=False)
    seen: dict[str, None] = {}
    for line in lines:
        if line.user is not None:
            seen.setdefault(line.user)
    return list(seen)


def add_user(path: Path | str, user: str, password: str) -> None:
    """Add ``user`` with a bcrypt hash; creates the file (mode 0600) if needed.

    Raises UserExistsError if the user is already there, ValueError for a bad name or password.
    """
    validate_username(user)
    entry = _entry(user, hash_password(password))

    def change(lines: list[HtpasswdLine]) -> list[bytes]:
        if any(line.user == user for line in lines):
            raise UserExistsError(f"user {user!r} already exists in {path}")
        raws = [line.raw for line in lines]
        if raws and not raws[-1].endswith(b"\n"):
            raws[-1] += b"\n"
        return [*raws, entry]

    _edit(Path(path), change, missing_ok=True)


def set_password(path: Path | str, user: str, password: str) -> None:
    """Replace ``user``'s hash with a new bcrypt one. Raises UserNotFoundError."""
    validate_username(user)
    entry = _entry(user, hash_password(password))

    def change(lines: list[HtpasswdLine]) -> list[bytes]:
        index = _index_of(lines, user, path)
        newline = b"\n" if lines[index].raw.endswith(b"\n") else b""
        raws = [line.raw for line in lines]
        raws[index] = entry.rstrip(b"\n") + newline
        return raws

    _edit(Path(path), change, missing_ok=False)


def remove_user(path: Path | str, user: str) -> None:
    """Remove ``user``'s entries (all of them). Raises UserNotFoundError."""

    def change(lines: list[HtpasswdLine]) -> list[bytes]:
        _index_of(lines, user, path)
        return [line.raw for line in lines if line.user != user]

    _edit(Path(path), change, missing_ok=False)


def _entry(user: str, hashed: str) -> bytes:
    return f"{user}:{hashed}\n".encode()


def _index_of(lines: list[HtpasswdLine], user: str, path: Path | str) -> int:
    """The line that decides ``user``'s password (the first, as Apache reads it)."""
    for index, line in enumerate(lines):
        if line.user == user:
            return index
    raise UserNotFoundError(f"user {user!r} is not in {path}")


def _read_for_edit(path: Path, *, missing_ok: bool) -> list[HtpasswdLine]:
    try:
        return parse_lines(path.read_bytes())
    except FileNotFoundError:
        if missing_ok:
            return []
        raise HtpasswdFileError(f"htpasswd file {path} does not exist") from None
    except OSError as error:
        raise HtpasswdFileError(f"cannot read htpasswd file {path}: {error.strerror}") from None


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Serialise editors of files in ``directory`` (two `moorage user add` at once would
    otherwise each rewrite the file and one addition would be lost). A lock on the directory
    itself leaves no lock file behind."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _edit(
    path: Path, change: Callable[[list[HtpasswdLine]], list[bytes]], *, missing_ok: bool
) -> None:
    """Read, change and atomically replace the file: a reader (the registry) sees the old file
    or the new one, never half of one."""
    target = Path(os.path.realpath(path))  # edit a symlink's target, not replace the link
    try:
        with _directory_lock(target.parent):
            content = b"".join(change(_read_for_edit(target, missing_ok=missing_ok)))
            _replace(target, content)
    except OSError as error:
        raise HtpasswdFileError(f"cannot write htpasswd file {path}: {error.strerror}") from None


def _replace(target: Path, content: bytes) -> None:
    try:
        existing: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        existing = None
    # mkstemp creates the file 0600, which is what a new htpasswd file gets.
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            if existing is not None:
                os.fchmod(temp.fileno(), stat.S_IMODE(existing.st_mode))
                with contextlib.suppress(PermissionError):  # only root may give it away
                    os.fchown(temp.fileno(), existing.st_uid, existing.st_gid)
            temp.write(content)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    directory = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)
