"""The progress display's lines (shared/progress.py) from file states: what each stage says,
the retry reason, when a plain line is written, the summary. The display on a real terminal
and a real pipe, from real runs: tests/e2e/test_progress.py."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest

from shared.progress import FileState, PlainView, summary
from shared.runtime import lambda_template
from shared.runtime.lambda_local import LambdaLocal

REPO = Path(__file__).resolve().parents[2]
FILE = uuid.UUID("6b1f0c2e-0000-4000-8000-000000000001")


def _state(**fields) -> FileState:
    return FileState(index=2, of=3, shell_file_id=FILE, **fields)


@pytest.mark.parametrize("fields, says", [
    ({}, "queued"),
    ({"status": "preprocessing"}, "preprocessing"),
    ({"status": "preprocessing", "pages_stored": 50}, "preprocessing: 50 pages rendered"),
    ({"status": "ocr", "page_count": 142, "pages_read": 37}, "ocr: 37/142 pages read"),
    ({"status": "ocr", "page_count": 142, "pages_read": 37, "retry_code": "throttled", "retry_attempt": 2,
      "max_attempts": 10}, "ocr: 37/142 pages read, retrying throttled (attempt 2 of 10)"),
    ({"status": "discovering", "page_count": 142, "pages_read": 142, "retry_code": "dependency_unavailable",
      "retry_attempt": 5, "max_attempts": 10}, "discovering: retrying dependency_unavailable (attempt 5 of 10)"),
    ({"status": "discovering", "retry_code": "timeout", "retry_attempt": 1}, "discovering: retrying timeout (attempt 1)"),
    ({"status": "completed", "page_count": 1}, "completed: 1 page"),
    ({"status": "failed", "error_code": "encrypted"}, "failed: encrypted"),
])
def test_each_state_says_where_the_file_is(fields, says):
    state = _state(**fields)
    assert state.describe() == says
    assert state.label == "[2/3] 6b1f0c2e"


def test_a_plain_line_per_change_and_page_counts_at_most_every_interval(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("shared.progress.time.monotonic", lambda: clock[0])
    out = io.StringIO()
    view = PlainView(out, page_interval_s=5.0)
    ocr = dict(status="ocr", page_count=10)
    for seconds, state in [
        (0, _state()),
        (1, _state()),  # nothing new: no line
        (2, _state(**ocr, pages_read=1)),  # a new stage: at once
        (3, _state(**ocr, pages_read=2)),  # pages only, 1 s later: held
        (8, _state(**ocr, pages_read=4)),  # pages only, 6 s later: written
        (9, _state(**ocr, pages_read=5, retry_code="throttled", retry_attempt=1)),  # a retry: at once
        (10, _state(status="completed", page_count=10)),
    ]:
        clock[0] = 100.0 + seconds
        view.update([state])
    assert out.getvalue().splitlines() == [
        "[2/3] 6b1f0c2e queued",
        "[2/3] 6b1f0c2e ocr: 1/10 pages read",
        "[2/3] 6b1f0c2e ocr: 4/10 pages read",
        "[2/3] 6b1f0c2e ocr: 5/10 pages read, retrying throttled (attempt 1)",
        "[2/3] 6b1f0c2e completed: 10 pages",
    ]


def test_the_summary_counts_outcomes_and_pages():
    states = [_state(status="completed", page_count=142), _state(status="failed", error_code="x", page_count=2),
              _state(status="ocr", page_count=3)]
    assert summary(states, 81.44) == "finished 3 files in 81.4 s: 1 completed, 1 failed, 1 unfinished; 147 pages"
    assert summary(states[:1], 2) == "finished 1 file in 2.0 s: 1 completed, 0 failed; 142 pages"


def test_lambda_progress_counts_attempts_against_the_templates_max_receive_count(tmp_path):
    # The local Lambda's queues are the template's; "attempt 5 of 10" is its maxReceiveCount.
    local = LambdaLocal(tmp_path, REPO / "template.yaml", {"QueuePrefix": "dp"})
    local.parameters = lambda_template.parameters(local.template_path, local.overrides)
    local.template = lambda_template.load(local.template_path, local.overrides)
    assert local.max_attempts() == {"preprocess": 10, "ocr": 10, "discover": 10}
