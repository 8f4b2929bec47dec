"""When to try a network exchange again, and how long to wait first: the one
policy every download and every remote cache request follows.

An attempt that fails in a way another attempt may not (a 5xx, a 429, a dropped
connection) raises `Failure(retry=True)`, with the server's `Retry-After` when it
gave one; `retrying` waits (the server's delay, capped, or an exponential backoff
with jitter) and tries again until the policy's attempts are spent, then raises
`GaveUp`, whose reason says how many attempts were made.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # per location
    backoff: float = 0.5  # seconds before the second attempt, doubled each time
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        base = min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff)
        return base * (0.5 + random.random() / 2)


class Failure(Exception):
    """One attempt did not succeed; `reason` says why, `retry` whether another
    attempt may, `retry_after` the seconds the server asked to wait."""

    def __init__(self, reason: str, retry: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.retry_after = reason, retry, retry_after


class GaveUp(Failure):
    """The last attempt's failure; its reason names the attempts made when more than one."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason + (f" (after {attempts} attempts)" if attempts > 1 else ""))
        self.attempts = attempts


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A Retry-After header's delay in seconds: a number of seconds or an HTTP date
    (a date past is 0); None when absent or neither."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    import email.utils  # here: only an HTTP date in Retry-After needs it

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def retrying(policy: RetryPolicy, once: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """once()'s result, calling it again after each Failure that may be retried,
    as the policy allows; GaveUp with the last reason otherwise."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return once()
        except Failure as exc:
            if not exc.retry or attempt >= policy.attempts:
                raise GaveUp(exc.reason, attempt) from None
            sleep(policy.delay(attempt, exc.retry_after))
