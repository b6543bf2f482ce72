"""A clock for the limiters that moves only when told, or when they sleep."""

from __future__ import annotations


class FakeTime:
    """`clock` and `sleep` for a limiter: a sleep is recorded and moves the clock
    on by as much (so a background caller's wait ends), nothing is slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
