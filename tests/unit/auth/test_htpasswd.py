"""htpasswd files as operators make them (with Apache's real ``htpasswd`` tool) and as the
registry reads and edits them."""

from __future__ import annotations

import logging
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from moorage.auth import htpasswd
from moorage.auth.credential_cache import CredentialCache
from moorage.auth.htpasswd import (
    HtpasswdAuthenticator,
    HtpasswdFileError,
    UserExistsError,
    UserNotFoundError,
    add_user,
    list_users,
    remove_user,
    set_password,
)
from moorage.auth.identity import Identity, Via

HTPASSWD = "/usr/bin/htpasswd"


def htpasswd_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run Apache's htpasswd; these tests are about files it made, so it must be there."""
    if not os.access(HTPASSWD, os.X_OK):
        pytest.fail(f"{HTPASSWD} is missing: apt-get install apache2-utils")
    return subprocess.run(
        [HTPASSWD, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def make_entry(file: Path, user: str, password: str, *flags: str) -> None:
    """Add or update ``user`` in ``file`` with the real tool (creating the file if needed)."""
    create = [] if file.exists() else ["-c"]
    result = htpasswd_tool("-b", *create, *flags, file, user, password)
    assert result.returncode == 0, result.stderr


def tool_verifies(file: Path, user: str, password: str) -> bool:
    return htpasswd_tool("-vb", file, user, password).returncode == 0


ALICE = Identity("alice", Via.PASSWORD)

# htpasswd's flag, and how the hash it writes starts.
FORMATS = [
    pytest.param([], "$apr1$", id="apr1-default"),
    pytest.param(["-m"], "$apr1$", id="apr1"),
    pytest.param(["-B"], "$2y$", id="bcrypt"),
    pytest.param(["-B", "-C", "12"], "$2y$12$", id="bcrypt-cost-12"),
    pytest.param(["-s"], "{SHA}", id="sha1"),
    pytest.param(["-d"], "", id="crypt"),
    pytest.param(["-2"], "$5$", id="sha256-crypt"),
    pytest.param(["-5"], "$6$", id="sha512-crypt"),
]


@pytest.mark.parametrize(("flags", "prefix"), FORMATS)
def test_every_format_the_tool_writes_verifies(
    tmp_path: Path, flags: list[str], prefix: str
) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "correct horse", *flags)
    make_entry(file, "bob", "bobs password", *flags)
    assert file.read_text().split("\n")[0].split(":", 1)[1].startswith(prefix)
    auth = HtpasswdAuthenticator(file)

    # crypt (-d) only ever uses 8 characters, so the wrong password differs early.
    assert auth.authenticate_password("alice", "correct horse") == ALICE
    assert auth.authenticate_password("alice", "Correct horse") is None
    assert auth.authenticate_password("alice", "") is None
    assert auth.authenticate_password("bob", "correct horse") is None
    assert auth.authenticate_password("mallory", "correct horse") is None
    assert auth.authenticate_password("", "") is None


@pytest.mark.parametrize("password", ["s3cret", "abcdefghijklm", "$apr1$x$y", "{SHA}x"])
def test_plaintext_entries_never_log_anyone_in(tmp_path: Path, password: str) -> None:
    # Some plaintext looks like a hash ("abcdefghijklm" has the shape of DES crypt): it must
    # still not match itself.
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "fine", "-B")
    make_entry(file, "carol", password, "-p")
    assert f"carol:{password}" in file.read_text()
    auth = HtpasswdAuthenticator(file)

    assert auth.authenticate_password("carol", password) is None
    assert auth.authenticate_password("carol", "") is None
    assert auth.authenticate_password("alice", "fine") == ALICE


def test_plaintext_entries_are_reported_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "fine", "-B")
    make_entry(file, "carol", "s3cret-plain", "-p")
    with caplog.at_level(logging.WARNING, logger="moorage.auth"):
        auth = HtpasswdAuthenticator(file)
    assert auth.users() == ["alice"]
    [record] = caplog.records
    assert getattr(record, "user", None) == "carol"
    assert "plaintext" in record.getMessage()
    assert "s3cret" not in str(record.__dict__)


def test_malformed_lines_are_skipped_without_logging_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "fine")
    with file.open("a") as out:
        out.write("oops-a-password-pasted-here\n:nouser\n\n   # a comment\n")
    with caplog.at_level(logging.WARNING, logger="moorage.auth"):
        auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "fine") == ALICE
    assert "oops" not in caplog.text
    assert [getattr(r, "line", None) for r in caplog.records] == [2, 3]


def test_file_format_as_apache_reads_it(tmp_path: Path) -> None:
    """Comments, blank lines and a trailing ':comment' field; the first entry wins."""
    alice1 = htpasswd.hash_password("first")
    alice2 = htpasswd.hash_password("second")
    file = tmp_path / "htpasswd"
    file.write_text(f"# users\n\n  alice:{alice1}:Alice Liddell\r\nalice:{alice2}\nbob:{alice2}")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "first") == ALICE
    assert auth.authenticate_password("alice", "second") is None
    assert auth.authenticate_password("bob", "second") == Identity("bob", Via.PASSWORD)


def test_a_long_bcrypt_password_verifies_as_apache_made_it(tmp_path: Path) -> None:
    # bcrypt reads 72 bytes; Apache truncates, and so must the check of its hashes.
    file = tmp_path / "htpasswd"
    password = "p" * 100
    make_entry(file, "alice", password, "-B")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", password) == ALICE
    assert auth.authenticate_password("alice", "p" * 71) is None


def test_a_nul_in_a_password_is_refused_not_an_error(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "pw\0") is None
    assert auth.authenticate_password("nobody", "pw\0") is None


def test_a_missing_file_at_start_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdFileError, match=r"cannot read htpasswd file .*nope"):
        HtpasswdAuthenticator(tmp_path / "nope")


# --- changes on disk ------------------------------------------------------------------------


def test_changes_take_effect_without_a_new_object(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "old", "-B")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "old") == ALICE
    assert auth.authenticate_password("bob", "pw") is None

    make_entry(file, "bob", "pw", "-B")
    assert auth.authenticate_password("bob", "pw") == Identity("bob", Via.PASSWORD)

    # Same user, same cost: the file keeps its size, and probably its timestamp tick too.
    make_entry(file, "alice", "new", "-B")
    assert auth.authenticate_password("alice", "old") is None
    assert auth.authenticate_password("alice", "new") == ALICE

    assert htpasswd_tool("-D", file, "alice").returncode == 0
    assert auth.authenticate_password("alice", "new") is None


def test_a_same_size_rewrite_within_a_timestamp_tick_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem with one-second timestamps (or an older kernel's coarse clock), a new
    hash of the same length written within the tick leaves the file's stat unchanged."""

    def one_second_timestamps(st: os.stat_result) -> tuple[int, int, int, int, int]:
        second = 1_000_000_000
        mtime, ctime = st.st_mtime_ns // second * second, st.st_ctime_ns // second * second
        return (st.st_dev, st.st_ino, st.st_size, mtime, ctime)

    monkeypatch.setattr(htpasswd, "_fingerprint", one_second_timestamps)
    file = tmp_path / "htpasswd"
    old, new = htpasswd.hash_password("old"), htpasswd.hash_password("new")
    file.write_text(f"alice:{old}\n")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("alice", "old") == ALICE
    with file.open("r+") as out:  # in place: same inode, same size
        out.write(f"alice:{new}\n")
    assert auth.authenticate_password("alice", "old") is None
    assert auth.authenticate_password("alice", "new") == ALICE


def test_the_cache_is_cleared_when_the_file_changes(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "old", "-B")
    cache = CredentialCache()
    auth = HtpasswdAuthenticator(file, cache)
    assert auth.authenticate_password("alice", "old") == ALICE
    assert len(cache) == 1  # the next request skips bcrypt

    make_entry(file, "alice", "new", "-B")
    assert auth.authenticate_password("alice", "old") is None
    assert len(cache) == 0


def test_successes_are_cached_and_failures_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file)
    checks: list[str] = []
    real_verify = htpasswd.verify_password

    def counting_verify(password: str, hashed: str) -> bool:
        checks.append(hashed)
        return real_verify(password, hashed)

    monkeypatch.setattr(htpasswd, "verify_password", counting_verify)
    for _ in range(3):
        assert auth.authenticate_password("alice", "pw") == ALICE
        assert auth.authenticate_password("alice", "wrong") is None
    assert len(checks) == 4  # one success, then every failure


def test_an_unreadable_file_keeps_the_last_good_contents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file)
    moved = tmp_path / "moved"
    file.rename(moved)
    with caplog.at_level(logging.WARNING, logger="moorage.auth"):
        for _ in range(3):
            assert auth.authenticate_password("alice", "pw") == ALICE
            assert auth.authenticate_password("alice", "bad") is None
    [warning] = caplog.records  # once, not once per request
    assert "last good" in warning.getMessage()
    assert "pw" not in str(warning.__dict__.get("error"))

    make_entry(moved, "bob", "pw2", "-B")
    moved.rename(file)
    assert auth.authenticate_password("bob", "pw2") == Identity("bob", Via.PASSWORD)


def test_a_file_that_cannot_be_read_keeps_the_last_good_contents(tmp_path: Path) -> None:
    # (Permissions don't stop root, which the tests run as; a directory in its place can't be
    # read by anyone.)
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file)
    file.rename(tmp_path / "saved")
    file.mkdir()
    assert auth.authenticate_password("alice", "pw") == ALICE
    file.rmdir()
    (tmp_path / "saved").rename(file)
    make_entry(file, "alice", "pw2", "-B")
    assert auth.authenticate_password("alice", "pw2") == ALICE


def test_recall_answers_only_from_the_cache(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file, recall_recheck_seconds=0)
    assert auth.recall("alice", "pw") is None  # not verified yet: no bcrypt here
    assert auth.authenticate_password("alice", "pw") == ALICE
    assert auth.recall("alice", "pw") == ALICE
    assert auth.recall("alice", "wrong") is None
    make_entry(file, "alice", "other", "-B")
    assert auth.recall("alice", "pw") is None


def test_many_threads_during_a_change(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "old", "-B", "-C", "4")
    auth = HtpasswdAuthenticator(file)

    def check(i: int) -> bool:
        return auth.authenticate_password("alice", "old") == ALICE

    with ThreadPoolExecutor(8) as pool:
        results = pool.map(check, range(200))
        make_entry(file, "alice", "new", "-B", "-C", "4")
        list(results)
    # Once the change is on disk, no thread still accepts the old password.
    with ThreadPoolExecutor(8) as pool:
        assert not any(pool.map(check, range(50)))


# --- timing ---------------------------------------------------------------------------------


def _median_seconds(auth: HtpasswdAuthenticator, user: str, password: str) -> float:
    samples = []
    for _ in range(15):
        start = time.perf_counter()
        assert auth.authenticate_password(user, password) is None
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@pytest.mark.parametrize(
    "flags", [["-B"], ["-B", "-C", "8"], ["-m"]], ids=["bcrypt-5", "bcrypt-8", "apr1"]
)
def test_an_unknown_user_takes_as_long_as_a_wrong_password(
    tmp_path: Path, flags: list[str]
) -> None:
    """The dummy hash follows the file: if it were bcrypt cost 10 for a file of cost 5 entries
    (32 times the work), or apr1 for bcrypt, the ratio would be far outside these bounds."""
    file = tmp_path / "htpasswd"
    for user in ("alice", "bob", "carol"):
        make_entry(file, user, "pw", *flags)
    auth = HtpasswdAuthenticator(file)
    wrong = _median_seconds(auth, "alice", "nope")
    unknown = _median_seconds(auth, "mallory", "nope")
    assert 1 / 3 < unknown / wrong < 3, (unknown, wrong)


# --- editing --------------------------------------------------------------------------------


def test_added_users_are_bcrypt_cost_10_and_the_real_tool_verifies_them(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    add_user(file, "alice", "correct horse")
    assert file.read_text().startswith("alice:$2y$10$")
    assert file.stat().st_mode & 0o777 == 0o600
    assert tool_verifies(file, "alice", "correct horse")
    assert not tool_verifies(file, "alice", "wrong horse")
    assert HtpasswdAuthenticator(file).authenticate_password("alice", "correct horse") == ALICE


def test_edits_preserve_every_other_line(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "apr", "pw1")  # apr1, by the real tool
    original = file.read_bytes()
    file.write_bytes(b"# team\n\n" + original + b"legacy:{SHA}abc=:a comment\nlast:nonl")
    before = file.read_bytes()

    add_user(file, "alice", "pw")
    assert file.read_bytes().startswith(before + b"\n")  # the missing newline was added
    set_password(file, "alice", "pw2")
    remove_user(file, "alice")
    assert file.read_bytes() == before + b"\n"
    assert tool_verifies(file, "apr", "pw1")


def test_set_password_replaces_only_that_user(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "a", "-B")
    make_entry(file, "bob", "b", "-s")
    set_password(file, "alice", "a2")
    assert list_users(file) == ["alice", "bob"]
    assert tool_verifies(file, "alice", "a2")
    assert not tool_verifies(file, "alice", "a")
    assert tool_verifies(file, "bob", "b")


def test_refusals(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    add_user(file, "alice", "pw")
    before = file.read_bytes()
    with pytest.raises(UserExistsError, match="already exists"):
        add_user(file, "alice", "other")
    with pytest.raises(UserNotFoundError, match="'bob' is not in"):
        set_password(file, "bob", "pw")
    with pytest.raises(UserNotFoundError, match="'bob' is not in"):
        remove_user(file, "bob")
    assert file.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["htpasswd"]  # no temporary file left behind


def test_editing_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HtpasswdFileError, match="does not exist"):
        list_users(tmp_path / "nope")
    with pytest.raises(HtpasswdFileError, match="does not exist"):
        set_password(tmp_path / "nope", "alice", "pw")
    with pytest.raises(HtpasswdFileError, match="cannot write"):
        add_user(tmp_path / "no-dir" / "htpasswd", "alice", "pw")


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("", "empty"),
        ("a:b", "':'"),
        ("a b", "whitespace"),
        ("a\tb", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x00b", "control"),
        ("a\u200bb", "control"),
        ("#alice", "comment"),
        ("x" * 256, "at most 255"),
    ],
)
def test_bad_usernames_are_refused(tmp_path: Path, user: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        add_user(tmp_path / "htpasswd", user, "pw")
    assert not (tmp_path / "htpasswd").exists()


@pytest.mark.parametrize(
    ("password", "message"),
    [("", "empty"), ("a\0b", "NUL"), ("é" * 37, "72 bytes")],
)
def test_passwords_bcrypt_cannot_store_are_refused(
    tmp_path: Path, password: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        add_user(tmp_path / "htpasswd", "alice", password)


def test_a_unicode_user_and_password_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    add_user(file, "zoë", "pässwörd")
    assert list_users(file) == ["zoë"]
    assert tool_verifies(file, "zoë", "pässwörd")
    auth = HtpasswdAuthenticator(file)
    assert auth.authenticate_password("zoë", "pässwörd") == Identity("zoë", Via.PASSWORD)


def test_rewrite_is_atomic_and_keeps_mode_and_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    add_user(real, "alice", "pw")
    real.chmod(0o640)
    link = tmp_path / "htpasswd"
    link.symlink_to(real)
    with real.open("rb") as reader:  # a reader of the old file sees it whole
        add_user(link, "bob", "pw")
        assert b"bob" not in reader.read()
    assert link.is_symlink()
    assert real.stat().st_mode & 0o777 == 0o640
    assert list_users(link) == ["alice", "bob"]


def test_concurrent_editors_lose_no_user(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    file = tmp_path / "htpasswd"
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: add_user(file, f"user{i}", "pw"), range(8)))
    assert sorted(list_users(file)) == [f"user{i}" for i in range(8)]


def test_the_tool_is_required() -> None:
    assert shutil.which(HTPASSWD), "apt-get install apache2-utils"


def test_recall_sees_a_changed_file_within_its_recheck_interval(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file, recall_recheck_seconds=0.3)
    assert auth.authenticate_password("alice", "pw") == ALICE
    assert auth.recall("alice", "pw") == ALICE
    make_entry(file, "alice", "changed", "-B")
    time.sleep(0.35)
    assert auth.recall("alice", "pw") is None


def test_has_user_follows_the_file(tmp_path: Path) -> None:
    file = tmp_path / "htpasswd"
    make_entry(file, "alice", "pw", "-B")
    auth = HtpasswdAuthenticator(file)
    assert auth.has_user("alice")
    assert not auth.has_user("bob")
    htpasswd_tool("-D", file, "alice")
    assert not auth.has_user("alice")
