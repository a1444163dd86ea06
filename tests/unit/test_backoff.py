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


def test_the_default_budget_rides_out_an_hour_and_the_receive_count_derives_from_it() -> None:
    s = Settings()
    assert s.retry_budget_s >= 3600
    waits = [backoff_s(n, s.retry_delay_s, max_s=s.retry_max_delay_s) for n in range(1, s.max_receive_count)]
    assert sum(waits) >= s.retry_budget_s  # the last delivery comes after the budget
    assert sum(waits[:-1]) < s.retry_budget_s  # and not a delivery more than it needs
    # A compressed schedule (the chaos bench) derives its own count the same way.
    c = Settings(retry_delay_s=0.1, retry_budget_s=180, retry_max_delay_s=45)
    assert sum(backoff_s(n, 0.1, max_s=45) for n in range(1, c.max_receive_count)) >= 180
    assert Settings(max_receive_count=3).max_receive_count == 3  # an explicit count still wins
