"""bench/chaos.py on a small N: `docpipe worker --concurrency 2` while children are SIGKILLed,
the SQS endpoint goes away (a proxy outage: moto keeps queues in memory), Postgres restarts for
real and storage refuses connections. Every document ends exactly once, or failed with a code."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import needs_tesseract

pytest.importorskip("pgserver")
pytest.importorskip("moto.server")


@pytest.mark.slow
@needs_tesseract()
@pytest.mark.timeout(420)
def test_chaos_loses_nothing_and_duplicates_nothing():
    from bench.chaos import FAULTS, check, run_chaos

    # Given 20 documents (text and scanned PDFs) and a worker under every fault at once
    ledger = run_chaos(n=20, seed=11, kill_fraction=0.15, outage_s=4.0, text_templates=2, scanned_templates=1,
                       scanned_every=3, deadline_s=300, say=lambda s: None)

    # Then every one completed (they are all good documents: a run where all of them fail
    # must not pass) with exactly the rows of a clean run, through a Postgres outage four
    # times the old retry budget and stale dead letters; nothing is left in flight, stuck,
    # lost or dead-lettered behind a live file
    assert ledger["submitted"] == 20
    assert ledger["completed"] == ledger["submitted"], (ledger["failed_by_code"], ledger["stuck_statuses"])
    assert ledger["failed"] == 0 and ledger["wrongly_failed"] == 0
    assert ledger["stale_dead_letter_files"] >= 1
    assert ledger["pg_outage_s"] >= 4 * ledger["old_retry_budget_s_compressed"]
    assert ledger["duplicates"] == 0, ledger["duplicate_files"]
    assert ledger["lost"] == 0 and ledger["stuck"] == 0
    assert ledger["untyped_failures"] == 0, ledger["failed_by_code"]
    assert ledger["dlq_without_failed_row"] == 0
    assert ledger["messages_left"] == 0 and ledger["drained"], ledger["queue_depths_at_end"]
    assert ledger["worker_alive_at_end"] and ledger["worker_exit_code"] == 0
    # and the faults really happened
    assert sorted(ledger["outages_injected"] + ledger["faults_skipped"]) == sorted(kind for kind, _ in FAULTS)
    if shutil.which("pgbouncer"):  # the worker went through the pooler, and the pooler restarted
        assert "pgbouncer_restart" in ledger["outages_injected"], ledger["faults_skipped"]
    assert ledger["children_killed"] >= 1
    assert ledger["child_outcomes"].get("crashed", 0) >= 1
    assert check(ledger) == []
