"""What `docpipe process` shows while it works, as a user sees it. On a terminal (a real
pseudo-terminal): a bar per file redrawn in place, then the summary. On a pipe (CI, `2> log`):
plain lines, one when something changes, the reason when a stage is being retried, then the
summary. Never a file's name nor any of its text (file names are patient data)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pymupdf

from shared.runtime.localstack import free_port
from tests.conftest import needs_tesseract
from tests.e2e.test_cli import REPO, docpipe, lines

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


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_on_a_terminal(args: list, cols: int = 120, timeout_s: float = 300) -> tuple[int, str, str]:
    """Run docpipe with stderr on a pseudo-terminal (as in a shell) and stdout on a pipe; return
    the exit status, everything written to the terminal and stdout."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    script = Path(sys.executable).with_name("docpipe")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]
    proc = subprocess.Popen([*cmd, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE, stderr=child,
                            stdin=subprocess.DEVNULL, env={**os.environ, "TERM": "xterm-256color"})
    os.close(child)
    seen = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child side closed
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=timeout_s)
    reader.join(10)
    os.close(main)
    return proc.returncode, seen.decode("utf-8", "replace"), out.decode()


@needs_tesseract()
def test_on_a_terminal_the_bars_update_in_place_and_end_with_the_summary(samples_dir, tmp_path):
    # Given a six-page scan (every page goes through OCR) and a PDF with a text layer
    scan = tmp_path / f"{CANARY} scan.pdf"
    with pymupdf.open(samples_dir / "scanned_discharge.pdf") as one, pymupdf.open() as six:
        for _ in range(3):
            six.insert_pdf(one)
        six.save(scan)
    # When `docpipe process` runs in a terminal
    code, terminal, out = _run_on_a_terminal(
        ["process", "--json", "--data-dir", tmp_path / "data", scan, samples_dir / "two_visits.pdf"]
    )
    assert code == 0, terminal[-3000:]
    reports = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [r["status"] for r in reports] == ["completed", "completed"]

    # Then the display was redrawn in place: lines erased and the cursor moved back up over
    # the bars, frame after frame, with the pages read climbing
    assert terminal.count("\x1b[2K") >= 4 and "\x1b[1A" in terminal, terminal[-2000:]
    frames = [ANSI.sub("", frame) for frame in terminal.split("\x1b[1A")]
    assert len(frames) >= 3
    first = reports[0]["shell_file_id"][:8]
    read = [int(m) for m in re.findall(rf"\[1/2\] {first} .*?ocr: (\d+)/6 pages read", ANSI.sub("", terminal))]
    assert read and read == sorted(read), read  # seen, and never going backwards
    # ... and it ended with the last frame (both files completed, full bars) and the summary
    text = ANSI.sub("", terminal).replace("\r", "\n")
    tail = [line.strip() for line in text.splitlines() if line.strip()]
    assert re.fullmatch(r"finished 2 files in [\d.]+ s: 2 completed, 0 failed; 9 pages", tail[-2]), tail[-4:]
    assert tail[-1].startswith("review pages: run `docpipe view")
    assert re.match(rf"\[1/2\] {first} ━+ completed: 6 pages", tail[-4]), tail[-4:]
    assert re.match(rf"\[2/2\] {reports[1]['shell_file_id'][:8]} ━+ completed: 3 pages", tail[-3]), tail[-4:]
    # ... and never named a file nor showed its text
    for secret in (CANARY, *CANARY.split(), "two_visits"):
        assert secret not in terminal, secret
