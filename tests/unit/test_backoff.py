"""The redelivery schedule every runtime uses (worker, container children, Lambda)."""

from __future__ import annotations

from shared.runtime.worker import backoff_s
from shared.settings import Settings


def test_waits_grow_fourfold_from_retry_delay_up_to_15_minutes() -> None:
    first = Settings().retry_delay_s
    assert [backoff_s(n, first) for n in range(1, 8)] == [2, 8, 32, 128, 512, 900, 900]
    assert [backoff_s(n, 0.5) for n in (1, 2, 3)] == [1, 2, 8]  # whole seconds, never 0 unless asked
    assert backoff_s(3, 0) == 0


def test_default_deliveries_ride_out_three_minutes_of_a_dependency_down() -> None:
    s = Settings()
    waits = [backoff_s(n, s.retry_delay_s) for n in range(1, s.max_receive_count)]
    assert sum(waits) >= 170  # a database restart or failover, not only a blip


def test_a_dependencys_retry_after_wins_when_longer() -> None:
    assert backoff_s(1, 2, retry_after_s=7.2) == 8
    assert backoff_s(3, 2, retry_after_s=7.2) == 32  # our own wait is already longer
    assert backoff_s(1, 2, retry_after_s=10 * 24 * 3600) == 12 * 3600  # SQS's longest visibility
