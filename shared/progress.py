"""What `docpipe process` and `docpipe lambda process` show on stderr while files go through.

A ``ProgressMonitor`` thread reads where each file is from the database (``ops.progress``:
status, pages stored and read of the page count, a stage's pending retry with its error code
and attempt) every half second and hands it to a view:

- ``TerminalView`` when stderr is a terminal: a bar per file, redrawn in place (rich's
  ``Progress``), then the last frame stays and a summary line follows;
- ``PlainView`` otherwise (CI, a pipe, ``2> log``): a line when a file's stage, retry or
  outcome changes, its page count at most every few seconds, then the summary line.

A file is named by its place on the command line and the start of its shell_file_id, never by
its name (file names are often a patient's name), and nothing read from it is shown.

rich (Textualize's; what pip itself draws its progress bars with) was chosen over tqdm and
enlighten because it draws several bars at once and keeps lines written meanwhile above them
(Lambda's REPORT lines, a crash's log line) on one console that serialises the threads; it is
already installed with the ``local`` extra these commands need (SAM CLI depends on it), so the
Lambda zip and the container image are unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import IO

from shared import ops

TERMINAL = ("completed", "failed")


@dataclasses.dataclass(frozen=True)
class FileState:
    """One file's progress, as shown: ids, counts and codes only."""

    index: int  # 1-based place on the command line
    of: int
    shell_file_id: uuid.UUID
    status: str = "queued"
    page_count: int | None = None
    pages_stored: int = 0
    pages_read: int = 0
    error_code: str | None = None
    retry_code: str | None = None
    retry_attempt: int | None = None
    max_attempts: int | None = None

    @property
    def label(self) -> str:
        return f"[{self.index}/{self.of}] {str(self.shell_file_id)[:8]}"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def describe(self) -> str:
        """``ocr: 37/142 pages read``, ``discovering: retrying dependency_unavailable (attempt 5 of 10)``."""
        if self.status == "failed":
            return f"failed: {self.error_code or 'unknown'}"
        if self.status == "completed":
            return f"completed: {_pages(self.page_count or 0)}"
        if self.status == "ocr" and self.page_count:
            text = f"ocr: {self.pages_read}/{self.page_count} pages read"
        elif self.status == "preprocessing" and self.pages_stored:
            text = f"preprocessing: {_pages(self.pages_stored)} rendered"
        else:
            text = self.status
        if self.retry_code:
            of = f" of {self.max_attempts}" if self.max_attempts else ""
            text += f"{', ' if ':' in text else ': '}retrying {self.retry_code} (attempt {self.retry_attempt}{of})"
        return text

    def milestone(self) -> tuple:
        """What makes a new plain line at once: everything but the page counts."""
        return (self.status, self.retry_code, self.retry_attempt, self.error_code)


def _pages(n: int) -> str:
    return f"{n} page" + ("" if n == 1 else "s")


def summary(states: list[FileState], elapsed_s: float) -> str:
    """``finished 2 files in 81.4 s: 1 completed, 1 failed; 144 pages``."""
    completed = sum(s.status == "completed" for s in states)
    failed = sum(s.status == "failed" for s in states)
    unfinished = len(states) - completed - failed
    files = f"{len(states)} file" + ("" if len(states) == 1 else "s")
    text = f"finished {files} in {elapsed_s:.1f} s: {completed} completed, {failed} failed"
    if unfinished:
        text += f", {unfinished} unfinished"
    return text + f"; {_pages(sum(s.page_count or 0 for s in states))}"


class PlainView:
    """A line per change, for logs and pipes; page counts at most every ``page_interval_s``."""

    def __init__(self, stream: IO, page_interval_s: float = 5.0) -> None:
        self.stream = stream
        self.page_interval_s = page_interval_s
        self._shown: dict[uuid.UUID, tuple[tuple, str, float]] = {}  # milestone, line, when

    def update(self, states: list[FileState]) -> None:
        now = time.monotonic()
        for state in states:
            line = state.describe()
            shown = self._shown.get(state.shell_file_id)
            if shown is not None:
                milestone, last_line, when = shown
                if line == last_line:
                    continue
                if milestone == state.milestone() and now - when < self.page_interval_s:
                    continue  # only the page count moved, and recently: the next one will say it
            self._shown[state.shell_file_id] = (state.milestone(), line, now)
            self.write(f"{state.label} {line}")

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, text: str) -> None:
        self.write(text)


class TerminalView:
    """A bar per file (pages read of the page count), redrawn in place, with the stage, the
    retry reason and the time taken; on ``close`` the last frame stays and the summary follows."""

    def __init__(self, console) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        # stdout is left alone (results may be piped while stderr is the terminal); writes to
        # sys.stderr from this process (warnings, a crash's log line) print above the bars.
        self.progress = Progress(
            TextColumn("{task.fields[label]}", markup=False),
            # Plain colours: rich's own finished green becomes grey on a 16-colour terminal.
            BarColumn(bar_width=30, complete_style="blue", finished_style="green"),
            TextColumn("{task.fields[what]}", markup=False),
            TimeElapsedColumn(),
            console=console,
            redirect_stdout=False,
            redirect_stderr=True,
            refresh_per_second=4,
        )
        self.tasks: dict[uuid.UUID, int] = {}
        self.progress.start()

    def update(self, states: list[FileState]) -> None:
        for state in states:
            task = self.tasks.get(state.shell_file_id)
            if task is None:
                task = self.tasks[state.shell_file_id] = self.progress.add_task(
                    "", total=None, label=state.label, what=state.describe()
                )
            # No page count before preprocess has finished: an indeterminate bar until then.
            total = state.page_count or None
            done = state.pages_read if total else 0
            if state.done and total:
                done = total if state.status == "completed" else min(done, total)
            self.progress.update(task, total=total, completed=done, what=state.describe())
            if state.done:
                self.progress.stop_task(task)

    def write(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def close(self, text: str) -> None:
        self.progress.refresh()
        self.progress.stop()
        self.console.print(text, markup=False, highlight=False)


def open_view(stream: IO | None = None):
    """``TerminalView`` when ``stream`` (stderr) is an interactive terminal, else ``PlainView``."""
    stream = stream or sys.stderr
    from rich.console import Console

    console = Console(file=stream)
    if console.is_terminal and not console.is_dumb_terminal:
        return TerminalView(console)
    return PlainView(stream)


class ProgressMonitor:
    """Polls the files' progress every ``interval_s`` on a thread of its own and shows it;
    ``stop`` shows the last state and the summary. A database that does not answer skips a
    poll: progress never stops the run."""

    def __init__(
        self,
        db,
        shell_file_ids: list[uuid.UUID],
        view,
        max_attempts: Callable[[str], int | None] = lambda stage: None,
        interval_s: float = 0.5,
    ) -> None:
        self.db, self.ids, self.view = db, list(shell_file_ids), view
        self.max_attempts = max_attempts
        self.interval_s = interval_s
        self.states = [FileState(n, len(self.ids), sfid) for n, sfid in enumerate(self.ids, 1)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="docpipe-progress", daemon=True)
        self._started = time.monotonic()

    def start(self) -> ProgressMonitor:
        self._started = time.monotonic()
        self.poll()
        self._thread.start()
        return self

    def poll(self) -> list[FileState]:
        try:
            rows = ops.progress(self.db, self.ids)
        except Exception:  # noqa: BLE001 - a database that did not answer: the next poll will
            return self.states
        states = []
        for state in self.states:
            row = rows.get(state.shell_file_id)
            if row is not None:
                state = dataclasses.replace(
                    state,
                    status=row["status"],
                    page_count=row["page_count"],
                    pages_stored=row["pages_stored"],
                    pages_read=row["pages_read"],
                    error_code=row["error_code"],
                    retry_code=row["retry_code"],
                    retry_attempt=row["retry_attempt"],
                    max_attempts=self.max_attempts(row["stage"]),
                )
            states.append(state)
        self.states = states
        self.view.update(states)
        return states

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def stop(self) -> list[FileState]:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        states = self.poll()
        self.view.close(summary(states, time.monotonic() - self._started))
        return states


class CurrentStderr:
    """A stream that writes to whatever ``sys.stderr`` is at the time: while a ``TerminalView``
    is up, rich's stand-in, which prints above the bars (Lambda's REPORT lines)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
