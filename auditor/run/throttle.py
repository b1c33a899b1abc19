"""Pacing for the executor: an adaptive concurrency gate, token buckets, and a run-wide cost budget."""

from __future__ import annotations

import asyncio
import time


class Gate:
    """Caps in-flight requests; halves the cap while the endpoint pushes back, and restores it step by step.

    After a push-back (429, 503) the limit halves (at least 1). Every `limit` consecutive clean replies
    raise it by one, up to the configured maximum.
    """

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.limit = maximum
        self.active = 0
        self.clean = 0
        self.cuts = 0
        self._cond = asyncio.Condition()

    async def acquire(self) -> None:
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.limit)
            self.active += 1

    async def release(self) -> None:
        async with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def pushed_back(self) -> None:
        """The endpoint said slow down."""
        self.clean = 0
        if self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self.cuts += 1

    def went_well(self) -> None:
        """A reply arrived without push-back."""
        self.clean += 1
        if self.limit < self.maximum and self.clean >= self.limit:
            self.limit += 1
            self.clean = 0


class Bucket:
    """A token bucket refilled at `per_minute` per minute, holding at most ten seconds' worth (at least one request)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float) -> None:
        """Wait until `amount` tokens (capped at the capacity) are available, then take them."""
        amount = min(amount, self.capacity)
        while True:
            self._refill()
            if self.tokens >= amount:
                self.tokens -= amount
                return
            await asyncio.sleep((amount - self.tokens) / self.rate)


class Budget:
    """A run-wide spending cap. Each request reserves its worst-case cost first, so the cap is never crossed."""

    def __init__(self, cap_usd: float, spent_usd: float = 0.0) -> None:
        self.cap = cap_usd
        self.spent = spent_usd
        self.reserved = 0.0
        self.exhausted = False

    def reserve(self, worst_case: float) -> bool:
        if self.exhausted or self.spent + self.reserved + worst_case > self.cap:
            self.exhausted = True
            return False
        self.reserved += worst_case
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        self.spent += actual
