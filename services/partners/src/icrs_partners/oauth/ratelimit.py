"""Token buckets, in memory, one per key (a client id, a remote address)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """`burst` requests at once, then `rate` per second, per key.

    `wait` only looks, `take` spends, `give_back` refunds: callers look before costly work,
    and either spend once they know whom to charge, or spend at once (so that concurrent
    requests cannot all look before any spends) and give back what turns out not to count.
    A bucket may go into debt (concurrent requests that all looked before any spent), down
    to one burst, which only lengthens that key's wait.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def wait(self, key: str) -> float:
        """Seconds until `key` may make a request; 0 when it may now."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = self._level(bucket, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def take(self, key: str) -> None:
        now = self._clock()
        bucket = self._buckets.pop(key, None)
        tokens = self.burst if bucket is None else self._level(bucket, now)
        # Re-inserted last: the dict's order is then the order of last use.
        self._buckets[key] = _Bucket(max(tokens - 1, -self.burst), now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def give_back(self, key: str) -> None:
        """Undo a `take` of `key` (never beyond a full bucket)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            now = self._clock()
            bucket.tokens = min(float(self.burst), self._level(bucket, now) + 1)
            bucket.updated = now

    @staticmethod
    def retry_after(wait: float) -> int:
        """A `Retry-After` value (whole seconds, at least 1) for a wait."""
        return max(1, math.ceil(wait))

    def _level(self, bucket: _Bucket, now: float) -> float:
        elapsed = max(0.0, now - bucket.updated)
        return min(float(self.burst), bucket.tokens + elapsed * self.rate)

    def _prune(self, now: float) -> None:
        # A full bucket is the same as none. If that frees too little, forget the keys used
        # longest ago (that only ever lets them through sooner) down to half the limit, so
        # that pruning stays rare.
        for key in [k for k, b in self._buckets.items() if self._level(b, now) >= self.burst]:
            del self._buckets[key]
        excess = len(self._buckets) - self.max_keys // 2
        for key in list(self._buckets)[: max(0, excess)]:
            del self._buckets[key]
