"""Gaps a mutation spot check found in the rate limiter's tests (issue 16): a later,
shorter 429 must not shorten the pause an earlier one asked for."""

from __future__ import annotations

from bot.ratelimit import TokenBucket


class FrozenTime:
    """A clock that moves only when told; sleeps are recorded, not slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_a_shorter_429_during_a_longer_pause_does_not_shorten_it() -> None:
    time = FrozenTime()
    bucket = TokenBucket(40, clock=time.clock, sleep=time.sleep)
    bucket.pause(30.0)  # Agora said: wait 30 s
    time.now = 1.0
    bucket.pause(2.0)  # another thread's 429 asks for less, while the first pause still holds
    assert time.now + bucket.reserve() == 30.0 + 1 / 40  # the first token after the longer pause, not at 3 s
    assert not bucket.acquire(max_wait=5)  # a person's call is still refused at once
    assert time.slept == []
