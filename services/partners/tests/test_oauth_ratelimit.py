"""The token buckets that rate-limit the token endpoint."""

from __future__ import annotations

import pytest

from icrs_partners.oauth.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=0.5, burst=3, clock=clock)

    for _ in range(3):
        assert limiter.wait("a") == 0
        limiter.take("a")

    assert limiter.wait("a") == pytest.approx(2.0)
    assert limiter.retry_after(limiter.wait("a")) == 2
    clock.now += 2
    assert limiter.wait("a") == 0
    limiter.take("a")
    assert limiter.wait("a") > 0


def test_keys_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(rate=0.1, burst=1, clock=Clock())
    limiter.take("a")

    assert limiter.wait("a") > 0
    assert limiter.wait("b") == 0


def test_what_is_given_back_can_be_spent_again_up_to_a_full_bucket() -> None:
    limiter = RateLimiter(rate=0.01, burst=2, clock=Clock())
    limiter.take("a")
    limiter.take("a")
    assert limiter.wait("a") > 0

    limiter.give_back("a")
    assert limiter.wait("a") == 0
    for _ in range(5):
        limiter.give_back("a")
    limiter.take("a")
    limiter.take("a")
    assert limiter.wait("a") > 0  # never more than the burst
    limiter.give_back("unknown")  # nothing to give back to: no bucket appears
    assert "unknown" not in limiter._buckets


def test_debt_is_bounded_by_one_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=2, clock=clock)
    for _ in range(50):  # requests that all looked before any spent
        limiter.take("a")

    # Back to one token after the debt (2) and one token's time, however many overdrew.
    assert limiter.wait("a") == pytest.approx(3.0)


def test_a_full_bucket_never_waits_and_the_table_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=2, max_keys=100, clock=clock)
    for i in range(1000):
        limiter.take(f"key-{i}")
        limiter.take(f"key-{i}")
        clock.now += 0.001

    assert len(limiter._buckets) <= 100
    # The most recent keys are still remembered; forgotten ones only get through sooner.
    assert limiter.wait("key-999") > 0


def test_rate_and_burst_must_make_sense() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(rate=1, burst=0)
