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


def _finished_run(settings: Settings, n: int, queue: str = "preprocess") -> _Running:
    message = QueueMessage(queue, f"m-{n}", f"rh-{n}", '{"shell_file_id": null}', 1)
    job = Job(queue, f"handlers.{queue}", message, "arn", settings, tempfile.mkdtemp(), 1.0)
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


class _CountingQueue(InMemoryQueue):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[float, str]] = []

    def receive(self, queue, max_messages=1, wait_s=0, visibility_s=None):
        self.asked.append((supervisor_module.time.monotonic(), queue))
        return super().receive(queue, max_messages, wait_s, visibility_s)


def _clocked(monkeypatch) -> list[float]:
    clock = [1000.0]
    monkeypatch.setattr(supervisor_module.time, "monotonic", lambda: clock[0])
    return clock


def _rounds(sup: Supervisor, clock: list[float], seconds: float, budget: int = 1) -> None:
    """The parent's rounds at every tick for ``seconds`` of its clock."""
    end = clock[0] + seconds
    while clock[0] < end:
        sup._receive_and_start(budget, long_poll=False)
        clock[0] += supervisor_module._TICK_S


def test_while_a_child_runs_queues_that_stay_empty_are_asked_less_and_less_often(monkeypatch):
    clock = _clocked(monkeypatch)
    queue = _CountingQueue()
    sup = Supervisor(Settings(storage_backend="local"), queue, concurrency=2, isolation="spawn")
    sup.running[_NO_PID] = _finished_run(sup.settings, 0, "ocr")  # one slot busy, one free
    started: list[str] = []
    monkeypatch.setattr(sup, "_start", lambda q, m: started.append(m.message_id))
    # Given 10 s of a child running and nothing to receive: 50 ticks
    _rounds(sup, clock, 10.0)
    per_queue = {q: sum(1 for _, asked in queue.asked if asked == q) for q in sup.queues}
    # Then each queue is asked about log2(1.6 / 0.2) + 10 / 1.6 times, not at every tick
    assert len(sup.queues) == 8 and all(4 <= n <= 11 for n in per_queue.values()), per_queue
    # And never more than EMPTY_POLL_MAX_S apart
    for q in sup.queues:
        times = [t for t, asked in queue.asked if asked == q]
        assert max(b - a for a, b in zip(times, times[1:])) <= supervisor_module.EMPTY_POLL_MAX_S + 0.2
    # When a message arrives on a queue in backoff, it is received within EMPTY_POLL_MAX_S
    queue.messages["ocr"] = [QueueMessage("ocr", "m-late", "rh", '{"shell_file_id": null}', 0)]
    arrived = clock[0]
    while not started:
        _rounds(sup, clock, supervisor_module._TICK_S)
    assert clock[0] - arrived <= supervisor_module.EMPTY_POLL_MAX_S + 0.2


def test_a_queue_that_delivers_and_every_stage_queue_after_a_child_ends_are_asked_at_the_next_tick(monkeypatch):
    clock = _clocked(monkeypatch)
    queue = _CountingQueue()
    signalled = _no_signals(monkeypatch)
    sup = Supervisor(Settings(storage_backend="local"), queue, concurrency=4, isolation="spawn")
    sup.running[_NO_PID] = _finished_run(sup.settings, 0, "ocr")
    monkeypatch.setattr(sup, "_start", lambda q, m: None)
    _rounds(sup, clock, 5.0)  # every queue deep in backoff
    # A queue that delivered is asked again at the next tick
    queue.messages["ocr"] = [QueueMessage("ocr", f"m-{i}", f"rh-{i}", "{}", 0) for i in range(3)]
    for _ in range(10):  # found within EMPTY_POLL_MAX_S
        _rounds(sup, clock, supervisor_module._TICK_S)
        if len(queue.messages["ocr"]) < 3:
            break
    assert len(queue.messages["ocr"]) == 2
    queue.asked.clear()
    _rounds(sup, clock, supervisor_module._TICK_S)
    assert "ocr" in [q for _, q in queue.asked] and len(queue.messages["ocr"]) == 1
    # When a child ends, every stage queue is asked at the next round (what the child sent is
    # there now); a dead-letter queue keeps its backoff: no child sends to one, only a receive
    # moves a message there
    sup.running[_NO_PID + 1] = _finished_run(sup.settings, 1, "ocr")  # another child still runs: backoff applies
    sup.running[_NO_PID + 1].process = _Child(alive=True)
    _rounds(sup, clock, 5.0)
    queue.asked.clear()
    _rounds(sup, clock, supervisor_module._TICK_S)
    assert len(queue.asked) < len(sup.queues)
    queue.asked.clear()
    sup.running[_NO_PID].process = _Child(alive=False)
    assert len(sup._collect()) == 1 and list(sup.running) == [_NO_PID + 1]
    _rounds(sup, clock, supervisor_module._TICK_S)
    stages = [q for q in sup.queues if q in supervisor_module.STAGE_HANDLERS]
    assert len(stages) == 4 and sorted(q for _, q in queue.asked) == sorted(stages)
    assert signalled == [_NO_PID]  # the ended child's process group, and nothing else


# Above any Linux pid (pid_max is at most 2**22): the parent signals a child's process group by its
# pid, and os.killpg(1) is kill(-1), every process there is.
_NO_PID = 2**22 + 1000


def _no_signals(monkeypatch) -> list[int]:
    """The parent's signals recorded, never sent."""
    sent: list[int] = []
    monkeypatch.setattr(supervisor_module.os, "killpg", lambda pid, sig: sent.append(pid))
    monkeypatch.setattr(supervisor_module.os, "kill", lambda pid, sig: sent.append(pid))
    return sent


class _Child:
    pid = _NO_PID
    exitcode = EXIT_OK

    def __init__(self, alive: bool) -> None:
        self.alive = alive

    def is_alive(self) -> bool:
        return self.alive

    def join(self) -> None:
        pass


def test_while_a_preprocess_child_runs_every_queue_is_asked_every_tick(monkeypatch):
    """Preprocess sends OCR messages while it runs: a free slot takes the first at the next tick."""
    clock = _clocked(monkeypatch)
    queue = _CountingQueue()
    sup = Supervisor(Settings(storage_backend="local"), queue, concurrency=2, isolation="spawn")
    sup.running[_NO_PID] = _finished_run(sup.settings, 0, "preprocess")
    _rounds(sup, clock, 2.0)
    assert len(queue.asked) == 10 * len(sup.queues)


def test_with_no_child_running_every_queue_is_asked_every_round(monkeypatch):
    clock = _clocked(monkeypatch)
    queue = _CountingQueue()
    sup = Supervisor(Settings(storage_backend="local"), queue, concurrency=1, isolation="spawn")
    _rounds(sup, clock, 2.0)
    assert len(queue.asked) == 10 * len(sup.queues)


def test_the_parent_never_signals_pid_0_or_1_whatever_it_holds_as_a_child(monkeypatch):
    """os.killpg(1) is kill(-1): SIGKILL to every process the parent may signal (as root, all of
    them); os.killpg(0) is the parent's own group. A child's pid is never either, but a bookkeeping
    slip (a fake in a test did it) must not take the machine down."""
    signalled = _no_signals(monkeypatch)
    sup = Supervisor(Settings(storage_backend="local"), InMemoryQueue(), concurrency=2, isolation="spawn")
    for pid in (0, 1):
        sup.running[pid] = _finished_run(sup.settings, pid)
        sup.running[pid].process = _Child(alive=False)
        sup.running[pid].process.pid = pid
    assert len(sup._collect()) == 2
    for pid in (0, 1):
        sup.running[pid] = _finished_run(sup.settings, pid)
        sup.running[pid].process = _Child(alive=True)
        sup.running[pid].process.pid = pid
        sup.running[pid].process.exitcode = None
    monkeypatch.setattr(supervisor_module, "_rss_kb", lambda pid: (0, 0))
    sup._kill_all("shutdown")
    assert signalled == []
