"""What `docpipe process` shows while it works, as a user sees it: on a pipe (CI, `2> log`),
plain lines, one when something changes, the reason when a stage is being retried, and a
summary at the end; never a file's name or any of its text (file names are patient data)."""

from __future__ import annotations

import re
import shutil

from shared.runtime.localstack import free_port
from tests.e2e.test_cli import docpipe, lines

CANARY = "Philippa Quartermaine 1961-09-17"
PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] ([0-9a-f]{8}) (.*)$", re.M)


def test_on_a_pipe_progress_is_plain_lines_with_the_retry_reason(samples_dir, tmp_path):
    # Given a document whose discover cannot reach its model endpoint (nothing listens there),
    # with two deliveries a second apart instead of an hour's budget, under a patient's name
    document = tmp_path / f"{CANARY} discharge.pdf"
    shutil.copy(samples_dir / "two_visits.pdf", document)
    env = {
        "ENCOUNTER_PROVIDER": "openai",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "OPENAI_API_KEY": "sk-local",
        "MAX_RECEIVE_COUNT": "2",
        "RETRY_DELAY_S": "1",
    }
    # When `docpipe process` runs with stderr on a pipe
    result = docpipe("process", "--json", "--data-dir", tmp_path / "data", document, env=env, timeout=300)

    # Then the file failed after its retries, and the progress said why while it waited
    assert result.returncode == 1, result.stderr[-3000:]
    report = lines(result)[0]
    assert report["status"] == "failed"
    progress = PROGRESS.findall(result.stderr)
    assert progress, result.stderr
    assert {(n, total) for n, total, _, _ in progress} == {("1", "1")}
    assert {sfid for _, _, sfid, _ in progress} == {report["shell_file_id"][:8]}
    said = [what for _, _, _, what in progress]
    assert any(re.fullmatch(r"discovering: retrying dependency_unavailable \(attempt 1 of 2\)", s) for s in said), said
    assert said[-1].startswith(f"failed: {report['error_code']}"), said
    # ... in plain lines: nothing redrawn in place, no colour
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr
    # ... the same line never twice in a row, and a summary after the files' lines
    assert all(a != b for a, b in zip(said, said[1:])), said
    assert re.search(r"^finished 1 file in [\d.]+ s: 0 completed, 1 failed\b", result.stderr, re.M), result.stderr
    # ... never the file's name nor anything read from it
    for secret in (CANARY, *CANARY.split(), "discharge"):
        assert secret not in result.stderr, secret


def test_quiet_silences_progress(samples_dir, tmp_path):
    result = docpipe("process", "--json", "--quiet", "--data-dir", tmp_path / "data", samples_dir / "two_visits.pdf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not PROGRESS.search(result.stderr) and "finished" not in result.stderr, result.stderr
