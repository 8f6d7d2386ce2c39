"""The hub's one token bucket, one backoff and one timestamp stamper, against their definitions."""

import pytest

from hub.pace import Backoff, RateLimiter, Stamper, TokenBucket


def test_a_new_bucket_allows_a_burst_then_waits_one_token_time() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(10.0) == pytest.approx(0.5)  # one token at 2/s
    assert bucket.take(10.5)
    assert not bucket.take(10.5)


def test_a_bucket_refills_at_its_rate_and_never_past_its_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(100.0) and bucket.take(100.0)  # a long quiet time gives back the burst, not 100
    assert not bucket.take(100.0)


def test_a_bucket_with_no_rate_allows_its_burst_then_nothing() -> None:
    bucket = TokenBucket(rate=0.0, burst=2.0)  # errors_per_second = 0 is a valid setting
    assert [bucket.take(t) for t in (0.0, 0.0, 1.0, 1e9)] == [True, True, False, False]


def test_a_limiter_keeps_one_bucket_per_key() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0)
    assert limiter.check("ana", 0.0) == 0.0
    assert limiter.check("ana", 0.0) == pytest.approx(1.0)
    assert limiter.check("bob", 0.0) == 0.0  # another caller is not slowed by ana


def test_backoff_doubles_to_its_cap_within_its_jitter() -> None:
    backoff = Backoff(first_s=0.1, cap_s=1.0)
    for attempt, base in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (50, 1.0)]:
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(base / 2 <= d <= base for d in delays)
    assert Backoff(first_s=0.05, cap_s=0.5, jitter=False).delay(2) == pytest.approx(0.2)


@pytest.mark.parametrize(("attempt", "delay"), [(29, 2.0**29), (30, 2.0**30), (31, 2.0**30), (1000, 2.0**30)])
def test_backoff_stops_doubling_after_thirty_attempts(attempt: int, delay: float) -> None:
    assert Backoff(first_s=1.0, cap_s=float("inf"), jitter=False).delay(attempt) == delay


def test_stamps_strictly_increase_even_when_the_clock_does_not() -> None:
    stamper = Stamper(stride_ns=1000)
    assert [stamper.stamp(t) for t in (5000, 5000, 4000, 9000)] == [5000, 6000, 7000, 9000]
