"""The container parent's own bookkeeping and shutdown, without children (issue 12, item 7)."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from pathlib import Path

from shared.ports import QueueMessage
from shared.runtime import supervisor as supervisor_module
from shared.runtime.jobs import EXIT_OK, Job
from shared.runtime.supervisor import Supervisor, _Running
from shared.settings import Settings
from tests.fakes import InMemoryQueue

ROOT = Path(__file__).resolve().parents[2]


class _Exited:
    pid = 1
    exitcode = EXIT_OK


def _finished_run(settings: Settings, n: int) -> _Running:
    message = QueueMessage("preprocess", f"m-{n}", f"rh-{n}", '{"shell_file_id": null}', 1)
    job = Job("preprocess", "handlers.preprocess", message, "arn", settings, tempfile.mkdtemp(), 1.0)
    return _Running(job=job, process=_Exited(), started=time.monotonic(), started_at=dt.datetime.now(dt.timezone.utc),
                    extend_at=0.0)


def test_the_parent_keeps_a_bounded_record_of_finished_children():
    """A worker lives for weeks: what it remembers of each message must not grow with them."""
    settings = Settings(storage_backend="local")
    sup = Supervisor(settings, InMemoryQueue(), isolation="spawn")
    for n in range(5000):
        sup._finish(_finished_run(settings, n), EXIT_OK)
    assert len(sup.finished) <= supervisor_module.FINISHED_KEPT < 5000
    assert sup.finished[-1].message_id == "m-4999"  # the latest kept, for progress and tests
    assert sup.counts == {"succeeded": 5000}  # the totals, kept as counters


class _LateQueue(InMemoryQueue):
    """A long poll that returns messages after the worker was told to stop."""

    def __init__(self, sup_ref: list) -> None:
        super().__init__()
        self.sup_ref = sup_ref
        self.released: list[tuple[str, str, int]] = []

    def receive(self, queue, max_messages=1, wait_s=0, visibility_s=None):
        self.sup_ref[0]._on_signal(15, None)  # SIGTERM arrives during the long poll
        return [QueueMessage(queue, f"late-{i}", f"rh-{i}", "{}", 1) for i in range(2)]

    def release(self, queue, receipt_handle, delay_s=0):
        self.released.append((queue, receipt_handle, delay_s))


def test_messages_a_long_poll_returns_after_sigterm_are_released_not_started(monkeypatch):
    ref: list = [None]
    queue = _LateQueue(ref)
    sup = Supervisor(Settings(storage_backend="local"), queue, stages=["preprocess"], include_dlqs=False,
                     concurrency=2, isolation="spawn")
    ref[0] = sup
    started = []
    monkeypatch.setattr(sup, "_start", lambda q, m: started.append(m.message_id))
    assert sup._receive_and_start(2, long_poll=True) == 0
    assert started == []
    assert queue.released == [("preprocess", "rh-0", 0), ("preprocess", "rh-1", 0)]  # visible again at once


def test_the_image_runs_tini_as_init():
    """Python as PID 1 reaps nothing: a Tesseract orphaned by a killed child would stay a zombie."""
    steps = [s.strip() for s in (ROOT / "Dockerfile").read_text().splitlines() if s.strip() and not s.startswith("#")]
    assert any("tini" in s and "apt-get install" in s for s in steps)
    entrypoint = next(s for s in steps if s.startswith("ENTRYPOINT"))
    assert entrypoint.startswith('ENTRYPOINT ["/usr/bin/tini", "--"')
