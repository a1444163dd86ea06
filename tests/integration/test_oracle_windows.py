"""Pass 0.5's windows and their reconciliation, against the oracle model (``bench/_oracle.py``):
an OpenAI-compatible server that reads each window as a perfect reader would, from the truth of
the encounter bench's own development packets. It tests our windows and reconciliation, not any
model.

Issue 24: windows read side by side (at most LLM_MAX_CONCURRENCY in flight) return the truth
exactly, as the sequential hand-off does, on every development packet, encounters spanning two
and three windows included; with a noisy reader concurrent is no worse than sequential; a 429 on
one window holds them all and never fails the file; a redelivery pays only for the windows it
has not got.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from bench import _oracle
from shared.encounters.openai import OpenAiEncounters
from shared.errors import ThrottledError
from shared.models import FileStatus, ShellFile, Stage
from shared.ports import QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.stages import discover

MODES = ("sequential", "concurrent")


@pytest.fixture(scope="module")
def clinical():
    if not _oracle.clinical_available():
        pytest.skip("../shared/corpus/text is absent")
    return _oracle.clinical_packets()


@pytest.fixture(scope="module")
def generated():
    return _oracle.generated_packets()


@pytest.fixture
def oracle():
    with _oracle.OracleModel() as model:
        yield model
    assert model.problems == [], model.problems


@pytest.fixture(autouse=True)
def _quiet(caplog):
    caplog.set_level(logging.WARNING)  # hundreds of windows: their INFO lines are not this test's


def provider(oracle: _oracle.OracleModel, mode: str, window: int = 20, concurrency: int = 8, **kwargs):
    made = OpenAiEncounters.from_settings(Settings(
        encounter_provider="openai", openai_base_url=oracle.base_url, openai_model="oracle", openai_timeout_s=30,
        llm_pages_per_window=window, llm_window_mode=mode, llm_max_concurrency=concurrency,
    ))
    for key, value in kwargs.items():
        setattr(made, key, value)
    return made


# --- the perfect reader: the truth, exactly ---------------------------------------------------


@pytest.mark.parametrize(("mode", "window"), [("sequential", 1), ("concurrent", 1), ("concurrent", 2)])
def test_every_development_packet_comes_back_as_its_truth(clinical, generated, oracle, mode, window):
    # Given every development packet of the encounter bench (documents of 1 to 4 pages), read in
    # windows of 1 (or 2) pages so that most encounters cross a window's edge, many two or three
    spans = [n for truth in clinical + generated for n in _oracle.windows_spanned(truth, window).values()]
    assert spans.count(2) >= 40 and (window > 1 or sum(n >= 3 for n in spans) >= 20)
    reader = provider(oracle, mode, window=window)
    problems = []
    for truth in clinical + generated:
        oracle.use(truth)
        # When a perfect reader reads each window
        discovery = reader.discover(truth.pages)
        problems += _oracle.compare(truth, discovery)
    # Then the encounters are the truth: pages, type, dates, provider, facility, patient, conflict
    assert problems == []
    assert sum(t.conflict for t in clinical) >= 2  # packets mixing two patients among them


def test_windows_go_out_side_by_side_at_most_the_setting_at_once(generated, oracle):
    truth = max(generated, key=lambda t: t.page_count)
    oracle.use(truth)
    oracle.latency_s = 0.4  # long enough for four calls to overlap on a busy machine
    windows = len(range(0, truth.page_count, 3))
    assert windows >= 6

    concurrent = provider(oracle, "concurrent", window=3, concurrency=4).discover(truth.pages)
    at_once = oracle.max_in_flight[truth.name]
    oracle.max_in_flight.clear()
    sequential = provider(oracle, "sequential", window=3).discover(truth.pages)

    assert at_once == 4 and oracle.max_in_flight[truth.name] == 1
    assert _oracle.compare(truth, concurrent) == [] and _oracle.compare(truth, sequential) == []
    # each concurrent window after the first saw the page before it, and not as a page to assign
    firsts = sorted(c.first_page for c in oracle.calls if c.context)
    assert len(firsts) == windows - 1
    assert all(c.context == [c.first_page - 1] for c in oracle.calls if c.context and c.first_page > 1)


# --- the noisy reader: concurrent no worse than sequential ------------------------------------


def test_with_a_noisy_reader_concurrent_is_no_worse_than_sequential(clinical, generated):
    noise = _oracle.Noise(rate=0.1, edge=3.0, seed=24)
    wrong = {}
    with _oracle.OracleModel(noise=noise) as oracle:
        for mode in MODES:
            reader = provider(oracle, mode, window=4)
            problems = []
            for truth in clinical + generated:
                oracle.use(truth)
                problems += _oracle.compare(truth, reader.discover(truth.pages))
            wrong[mode] = problems
    assert wrong["sequential"], "the noise changed nothing: it tests nothing"
    assert len(wrong["concurrent"]) <= len(wrong["sequential"]), wrong


# --- throttling: one Retry-After for every window, never a failed file ------------------------


def test_a_429_on_one_window_holds_every_window_then_the_file_completes(generated, oracle):
    truth = max(generated, key=lambda t: t.page_count)
    oracle.use(truth)
    oracle.latency_s = 0.2
    throttled = []

    def throttle(call):
        throttled.append(call)
        return 429, {"Retry-After": "1"}, {"error": {"message": "slow down", "type": "rate_limit"}}

    oracle.script.append(throttle)

    discovery = provider(oracle, "concurrent", window=3, concurrency=4).discover(truth.pages)

    # Then no window was sent while the hint held (the windows in flight with the throttled one
    # came back 0.2 s later and would have started the next ones at once), and the file's
    # encounters are the truth: the throttle slowed the file, it did not fail it
    answered = throttled[0].finished
    sent_while_held = [c for c in oracle.calls if answered + 0.1 < c.started < answered + 1.0 - 0.05]
    assert sent_while_held == [] and max(c.started for c in oracle.calls) >= answered + 0.95
    assert _oracle.compare(truth, discovery) == []
    assert len(oracle.calls) == len(range(0, truth.page_count, 3)) + 1  # every window once, the throttled twice


def _discovering_file(db, truth) -> uuid.UUID:
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.QUEUED))
    db.begin_preprocess(sfid)
    for page in truth.pages:
        db.upsert_text(sfid, page)
    assert db.finish_preprocess(sfid, truth.page_count, needs_ocr=False)
    return sfid


def _deliver(deps, sfid: uuid.UUID, receive_count: int):
    msg = QueueMessage("discover", f"m-{receive_count}", "rh", json.dumps({"shell_file_id": str(sfid)}), receive_count)
    event = sqs_event([msg], "arn:aws:sqs:us-east-1:000000000000:docpipe-discover", "us-east-1")
    record = SQSRecord(event["Records"][0])
    return handle_record(Stage.DISCOVER, record, discover.run, deps)


def test_a_long_throttle_keeps_the_windows_answered_and_the_redelivery_pays_only_the_rest(
    generated, oracle, stack_deps
):
    # Given a file discovering on the real database, and an endpoint that throttles one window for
    # longer than an invocation waits while the windows beside it are answered
    truth = max(generated, key=lambda t: t.page_count)
    oracle.use(truth)
    oracle.latency_s = 0.5

    def throttle_once_the_others_are_in_flight(call):
        deadline = time.monotonic() + 10
        while len(oracle.calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        return 429, {"Retry-After": "37"}, {"error": {"message": "slow down"}}

    oracle.script.append(throttle_once_the_others_are_in_flight)
    windows = len(range(0, truth.page_count, 3))
    deps = stack_deps.with_parts(encounters=provider(oracle, "concurrent", window=3, concurrency=4))
    sfid = _discovering_file(deps.db, truth)

    # When the message is delivered: the throttle outlasts the wait, so it is retried later ...
    with pytest.raises(ThrottledError) as caught:
        discover.run(discover_message(sfid), deps)
    assert caught.value.retry_after_s == pytest.approx(37, abs=1) and caught.value.retryable
    first = len(oracle.calls)
    kept = deps.db.query("select count(*) as n from discovery_windows where shell_file_id = %s", (sfid,))[0]["n"]
    assert 1 <= kept < windows and first == kept + 1  # the windows in flight were kept, none started after
    assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING  # not failed

    # ... and the redelivery asks only for the windows it has not got, then completes the file
    _deliver(deps, sfid, 2)
    assert len(oracle.calls) - first == windows - kept
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    manifest = deps.db.manifest(sfid)
    assert len(manifest.encounters) == len(truth.encounters)


def discover_message(sfid: uuid.UUID):
    from shared.models import DiscoverMessage

    return DiscoverMessage(shell_file_id=sfid)
