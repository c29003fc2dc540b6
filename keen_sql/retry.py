"""Opt-in retry of transactions that failed only because of concurrency.

A serialization failure (SQLSTATE 40001) or a detected deadlock (40P01) rolls the whole
transaction back and says nothing about the work itself: running the transaction again is the
documented remedy. `run_with_retry()` does that for a callable that opens and commits its own
transaction (``lambda: transfer(db, …)`` whose body is one ``with db.tenant(…)`` block), with
exponential backoff, full jitter and a bound on the attempts; every other error, and the last
retryable one, propagates unchanged.

Never wrap a callable that runs *inside* a transaction someone else commits: after 40001 the
enclosing transaction is aborted and only its owner can start it again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

__all__ = [
    "RETRYABLE_SQLSTATES",
    "RetryPolicy",
    "is_retryable",
    "retrying",
    "run_with_retry",
    "run_with_retry_async",
]

P = ParamSpec("P")
T = TypeVar("T")

#: serialization_failure and deadlock_detected: the transaction may simply be run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Attributes:
        attempts: total runs, the first included (at least 1).
        base_delay: seconds of the first backoff ceiling; each retry doubles it.
        max_delay: upper bound of any one backoff ceiling, in seconds.
    """

    attempts: int = 5
    base_delay: float = 0.01
    max_delay: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Return the pause before retry number `retry` (1, 2, …): full jitter.

        Uniform in [0, min(max_delay, base_delay * 2**(retry-1))]: spread out, so that the
        transactions that collided do not collide again in lockstep.
        """
        ceiling = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return (rng or random).uniform(0.0, ceiling)


DEFAULT_POLICY = RetryPolicy()


def is_retryable(exc: BaseException) -> bool:
    """Tell whether `exc` (or an exception it was raised from) is a 40001 or 40P01 failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) in RETRYABLE_SQLSTATES:
            return True
        current = current.__cause__ or current.__context__
    return False


def _pause_before_retry(
    exc: Exception, attempt: int, policy: RetryPolicy, rng: random.Random | None
) -> float | None:
    """Return the pause before running again after `exc`, or None to give up and re-raise."""
    if attempt == policy.attempts or not is_retryable(exc):
        return None
    pause = policy.delay(attempt, rng)
    log.info("retrying after %s (attempt %d, pause %.3fs)", type(exc).__name__, attempt, pause)
    return pause


def run_with_retry(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> T:
    """Call `fn` (one whole transaction) until it succeeds or fails for another reason.

    A 40001/40P01 failure is retried after `policy.delay()`, at most `policy.attempts` runs in
    all; the last failure is re-raised as it came.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            pause = _pause_before_retry(exc, attempt, policy, rng)
            if pause is None:
                raise
            sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


async def run_with_retry_async(
    fn: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> T:
    """The asyncio twin of `run_with_retry`: awaits `fn()` and pauses with `asyncio.sleep`."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return await fn()
        except Exception as exc:
            pause = _pause_before_retry(exc, attempt, policy, rng)
            if pause is None:
                raise
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def retrying(
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate a function that runs one whole transaction so that it is retried on 40001/40P01."""

    def decorate(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return run_with_retry(lambda: fn(*args, **kwargs), policy=policy)

        return wrapper

    return decorate
