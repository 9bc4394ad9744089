"""The cache of successful password checks: what it remembers, for how long, and what not."""

from __future__ import annotations

import threading

import pytest

from moorage.auth.credential_cache import CredentialCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_remembers_a_pair_only_with_the_same_password() -> None:
    cache = CredentialCache()
    cache.add("alice", "s3cret")
    assert cache.contains("alice", "s3cret")
    assert not cache.contains("alice", "s3cret ")
    assert not cache.contains("alice", "other")
    assert not cache.contains("bob", "s3cret")


def test_user_and_password_cannot_be_shifted_into_each_other() -> None:
    cache = CredentialCache()
    cache.add("ab", "c")
    assert not cache.contains("a", "bc")
    assert not cache.contains("abc", "")


def test_entries_expire_after_the_ttl() -> None:
    clock = FakeClock()
    cache = CredentialCache(ttl_seconds=60, clock=clock)
    cache.add("alice", "pw")
    clock.now += 59.9
    assert cache.contains("alice", "pw")
    clock.now += 0.2
    assert not cache.contains("alice", "pw")
    assert len(cache) == 0


def test_adding_again_refreshes_the_expiry() -> None:
    clock = FakeClock()
    cache = CredentialCache(ttl_seconds=10, clock=clock)
    cache.add("alice", "pw")
    clock.now += 8
    cache.add("alice", "pw")
    clock.now += 8
    assert cache.contains("alice", "pw")


def test_the_oldest_entry_is_evicted_when_full() -> None:
    cache = CredentialCache(max_entries=2)
    cache.add("a", "1")
    cache.add("b", "2")
    cache.add("c", "3")
    assert len(cache) == 2
    assert not cache.contains("a", "1")
    assert cache.contains("b", "2")
    assert cache.contains("c", "3")


def test_clear_forgets_everything() -> None:
    cache = CredentialCache()
    cache.add("alice", "pw")
    cache.clear()
    assert not cache.contains("alice", "pw")


def test_passwords_are_never_stored_or_shown() -> None:
    cache = CredentialCache()
    cache.add("alice", "hunter2-very-secret")
    assert "hunter2" not in repr(cache)
    stored = b"".join(cache._entries)
    assert b"hunter2" not in stored
    # Keyed per cache (per process): a fingerprint is useless outside it.
    other = CredentialCache()
    other.add("alice", "hunter2-very-secret")
    assert set(cache._entries).isdisjoint(other._entries)


@pytest.mark.parametrize(("ttl", "size"), [(0, 10), (-1, 10), (60, 0)])
def test_nonsense_limits_are_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        CredentialCache(ttl_seconds=ttl, max_entries=size)


def test_concurrent_use_stays_consistent() -> None:
    cache = CredentialCache(max_entries=50)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(500):
                cache.add(f"user{worker}", str(i))
                cache.contains(f"user{worker}", str(i - 1))
                if i % 97 == 0:
                    cache.clear()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(cache) <= 50
