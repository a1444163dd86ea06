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


class _RecordingQueue(InMemoryQueue):
    def __init__(self) -> None:
        super().__init__()
        self.released: list[tuple[str, str, int]] = []

    def release(self, queue, receipt_handle, delay_s=0):
        self.released.append((queue, receipt_handle, delay_s))


def _busy_supervisor(queue) -> tuple[Supervisor, list[str]]:
    """A supervisor of one slot, taken by a child that is still running."""
    settings = Settings(storage_backend="local", visibility_timeout_s=30)
    sup = Supervisor(settings, queue, stages=["ocr"], include_dlqs=False, concurrency=1, isolation="spawn")
    sup.running[1] = _finished_run(settings, 0)
    started: list[str] = []
    return sup, started


def test_a_message_received_while_every_slot_is_busy_is_held_and_started_when_one_frees(monkeypatch):
    queue = _RecordingQueue()
    queue.messages["ocr"] = [QueueMessage("ocr", "m-1", "rh-1", '{"shell_file_id": null}', 0)]
    sup, started = _busy_supervisor(queue)
    monkeypatch.setattr(sup, "_start", lambda q, m: started.append(m.message_id))
    # Given every slot busy, when the parent receives: the message is held, not started
    assert sup._receive_and_start(1, long_poll=False) == 1
    assert started == [] and len(sup._held) == 1
    # When the child exits, the held message starts at once (no receive in between)
    sup.running.clear()
    sup._start_held()
    assert len(started) == 1 and not sup._held


def test_a_held_message_is_kept_invisible_and_released_at_once_on_sigterm(monkeypatch):
    queue = _RecordingQueue()
    queue.messages["ocr"] = [QueueMessage("ocr", "m-1", "rh-1", '{"shell_file_id": null}', 0)]
    sup, started = _busy_supervisor(queue)
    monkeypatch.setattr(sup, "_start", lambda q, m: started.append(m.message_id))
    sup._receive_and_start(1, long_poll=False)
    (held,) = sup._held
    # While the running child takes long, the held message's visibility is extended like its own
    held.extend_at = 0.0
    monkeypatch.setattr(supervisor_module, "_rss_kb", lambda pid: (0, 0))
    sup.running[1].extend_at = time.monotonic() + 60
    sup._watch()
    assert queue.released == [("ocr", held.message.receipt_handle, 30)]
    # On SIGTERM it goes back at once, never started
    sup.running.clear()
    sup._on_signal(15, None)
    sup.run()
    assert started == [] and not sup._held
    assert queue.released[-1] == ("ocr", held.message.receipt_handle, 0)
