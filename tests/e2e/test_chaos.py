"""bench/chaos.py on a small N: `docpipe worker --concurrency 2` while children are SIGKILLed,
the SQS endpoint goes away (a proxy outage: moto keeps queues in memory), Postgres restarts for
real and storage refuses connections. Every document ends exactly once, or failed with a code."""

from __future__ import annotations

import pytest

from tests.conftest import needs_tesseract

pytest.importorskip("pgserver")
pytest.importorskip("moto.server")


@pytest.mark.slow
@needs_tesseract()
@pytest.mark.timeout(300)
def test_chaos_loses_nothing_and_duplicates_nothing():
    from bench.chaos import FAULTS, check, run_chaos

    # Given 20 documents (text and scanned PDFs) and a worker under every fault at once
    ledger = run_chaos(n=20, seed=11, kill_fraction=0.15, outage_s=4.0, text_templates=2, scanned_templates=1,
                       scanned_every=3, deadline_s=200, say=lambda s: None)

    # Then each one completed with exactly the rows of a clean run, or failed with a code,
    # and nothing is left in flight, stuck, lost or dead-lettered behind a live file
    assert ledger["submitted"] == 20
    assert ledger["submitted"] == ledger["completed"] + ledger["failed"], ledger["stuck_statuses"]
    assert ledger["duplicates"] == 0, ledger["duplicate_files"]
    assert ledger["lost"] == 0 and ledger["stuck"] == 0
    assert ledger["untyped_failures"] == 0, ledger["failed_by_code"]
    assert ledger["dlq_without_failed_row"] == 0
    assert ledger["messages_left"] == 0 and ledger["drained"], ledger["queue_depths_at_end"]
    assert ledger["worker_alive_at_end"] and ledger["worker_exit_code"] == 0
    # and the faults really happened
    assert ledger["outages_injected"] == [kind for kind, _ in FAULTS]
    assert ledger["children_killed"] >= 1
    assert ledger["child_outcomes"].get("crashed", 0) >= 1
    assert check(ledger) == []
