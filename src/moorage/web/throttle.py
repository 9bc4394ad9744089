"""Failed sign-ins, counted per user name and per client address, in a sliding window.

Kept in memory per process: with several workers an attacker gets at most the limit per worker,
which still turns an online guess into hours per password. Once a key is over its limit no
password is checked at all until the window has moved on, so a throttled guess costs nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Keys remembered at most; the oldest are dropped first, so a flood of names cannot grow memory.
MAX_KEYS = 10_000


class SignInThrottle:
    def __init__(
        self,
        per_user: int,
        per_address: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"user": per_user, "address": per_address}
        self._window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def _keys(self, user: str, address: str) -> list[tuple[str, str]]:
        return [("user", user), ("address", address)]

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a sign-in by ``user`` from ``address`` may be tried; 0 if now."""
        now = self._clock()
        wait = 0.0
        for key in self._keys(user, address):
            times = self._recent(key, now)
            if len(times) >= self._limits[key[0]]:
                wait = max(wait, times[0] + self._window - now)
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        for key in self._keys(user, address):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def succeeded(self, user: str) -> None:
        """A right password clears its user's count (not its address's: one address may be
        guessing many users' passwords)."""
        self._failures.pop(("user", user), None)
