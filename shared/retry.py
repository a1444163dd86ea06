"""The redelivery schedule every runtime uses (container parent, in-process worker, Lambda),
and the receive count a retry budget in time needs. Pure arithmetic: settings.py derives
MAX_RECEIVE_COUNT from it, the runtimes time each redelivery with it."""

from __future__ import annotations

import math

MAX_DELAY_S = 12 * 3600  # SQS's longest visibility timeout
MAX_BACKOFF_S = 900


def backoff_s(
    receive_count: int, first_s: float, retry_after_s: float | None = None, max_s: float = MAX_BACKOFF_S
) -> int:
    """Visibility delay before a failed message is tried again: ``first_s`` (RETRY_DELAY_S)
    after its first delivery, 4x longer after each later one, at most ``max_s``
    (RETRY_MAX_DELAY_S, 15 minutes); or the dependency's own Retry-After when it asked for
    longer."""
    exponent = min(max(0, receive_count - 1), 64)  # 4**64 s is already past any cap
    delay = min(max_s, math.ceil(first_s * 4**exponent))
    if retry_after_s:
        delay = max(delay, math.ceil(retry_after_s))
    return int(min(delay, MAX_DELAY_S))


def deliveries_for(budget_s: float, first_s: float, max_s: float = MAX_BACKOFF_S, limit: int = 1000) -> int:
    """The fewest deliveries whose waits add up to ``budget_s``: a dependency down for the
    whole budget fails nothing; one down for longer reaches the DLQ on the next delivery.
    At most ``limit`` (SQS's largest maxReceiveCount)."""
    waited, deliveries = 0, 1
    while waited < budget_s and deliveries < limit:
        step = backoff_s(deliveries, first_s, max_s=max_s)
        if step <= 0:
            return limit  # no waits at all: only a count can end it
        waited += step
        deliveries += 1
    return deliveries
