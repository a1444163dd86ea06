"""The container worker: a small parent that polls, a fresh child process per message.

Modelled on rq's worker. The parent only receives messages and watches children; it never
imports PyMuPDF, an OCR engine or an LLM client, so nothing native accumulates in it. Each
message runs in a child forked from a fork server that has only pure-Python docpipe
preloaded (or spawned afresh), which builds a one-record SQS event and calls the stage's
own ``lambda_handler``, exactly as Lambda would, then exits: its memory, native pools and
temp files go with it.

While a child runs, the parent keeps its message invisible (heartbeat), and kills the child's
process group when it runs past STAGE_TIMEOUT_S or above CHILD_MEMORY_MB; the message is then
released for redelivery. With every slot busy, the parent holds one more message (PREFETCH),
kept invisible the same way, and starts it the moment a child exits, before that child's
message is deleted: a slot never waits for a round of receives. Meanwhile a queue that stays
empty is asked less and less often (up to EMPTY_POLL_MAX_S apart) until a child ends (a stage
queue: a dead-letter queue stays on its backoff).
Success deletes the message; any other end (a failed record, a crash, SIGKILL, the OOM killer)
leaves it to SQS's redelivery and, in the end, the DLQ.

Signals (Render sends SIGTERM, then SIGKILL after its grace period):
- first SIGTERM/SIGINT: stop receiving (messages a long poll returns after it, and a held
  message, are released at once, not started); running children get SHUTDOWN_GRACE_S to finish;
  whatever is still running then is killed and its message released at once;
- second SIGTERM/SIGINT: kill every child's process group now and release their messages.
Nothing is lost either way: a message is deleted only after its child succeeded.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from shared.errors import PipelineError
from shared.models import PipelineRun, Stage, shell_file_id_of
from shared.observability import logger
from shared.ports import Queue, QueueMessage
from shared.runtime.events import queue_arn
from shared.runtime.jobs import EXIT_OK, Job, read_result
from shared.runtime.targets import record_abnormal_end, run_job
from shared.runtime.worker import DEFAULT_STAGES, FAILURES_HANDLER, STAGE_HANDLERS, ScanTimer, backoff_s, serving_order
from shared.settings import Settings

_TICK_S = 0.2
# Messages the parent holds, received while every slot is busy, to start the moment a child
# exits instead of polling the queues then (~20-50 ms of receives, one queue after another).
# One: a message held is one another worker cannot take meanwhile.
PREFETCH = 1
# While children run, the parent receives every tick, for a free slot or the message it holds
# (PREFETCH): a round over every queue it serves (eight in ``docpipe process``) each time. A queue
# found empty is asked again a tick later, then after twice as long each time it is found empty
# again, up to this; a message on it waits at most that long for a slot that is free meanwhile.
# A queue that delivers, and every stage queue once a child ends (what it sent is there now; a
# dead-letter queue fills only on a receive), is asked every tick again; with no child running,
# or a preprocess child, nothing backs off (the idle worker long-polls). An empty receive costs
# the parent ~5 ms of CPU in ``docpipe process`` (botocore and the in-process moto server); the
# 142-page scan's parent made 175 receives at concurrency 2, ~1 s of its CPU.
EMPTY_POLL_MAX_S = 1.6
# What the parent remembers of finished children: the latest few for progress lines, tests
# and benches; totals as counters. A worker runs for weeks, so nothing here grows per message.
FINISHED_KEPT = 1000


# What the fork server imports once, before it forks any child: pure-Python docpipe.
FORKSERVER_PRELOAD = ["shared.runtime.child", "shared.runtime.targets"]


def start_fork_server() -> None:
    """Start the fork server now rather than at the first child: it imports its preload in a
    process of its own (~1 s of CPU), which then overlaps whatever the caller does meanwhile
    (``docpipe process``: starting its stack, migrating, uploading). It keeps the environment
    of this moment, which must be the children's, but for what they get in their ``Job``'s
    settings (the database URL)."""
    multiprocessing.get_context("forkserver").set_forkserver_preload(FORKSERVER_PRELOAD)
    from multiprocessing import forkserver

    forkserver.ensure_running()


def stop_fork_server() -> None:
    """Ask the fork server to exit now, without waiting for it (``docpipe process``, its worker
    done). Otherwise it exits only once this process has, and its exit (the interpreter's
    teardown of boto3, psycopg, pydantic: 0.2-0.3 s) comes after this one's, which a caller
    reading our output waits for. multiprocessing has no public call for this; ``_stop`` is what
    its own tests use, and where it is missing the fork server exits with this process as before."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    stop = getattr(server, "_stop", None)
    if stop is None or getattr(server, "_forkserver_pid", None) is None:
        return
    # _stop closes the server's "alive" pipe, then waits for it to exit: the wait in a thread.
    threading.Thread(target=stop, name="docpipe-forkserver-stop", daemon=True).start()


@dataclasses.dataclass
class Finished:
    """What the parent saw of one child: for progress lines, benches and tests."""

    queue: str
    message_id: str
    shell_file_id: str | None
    exitcode: int
    outcome: str  # succeeded | failed | killed:<reason>
    duration_s: float
    peak_rss_kb: int


@dataclasses.dataclass
class _Held:
    queue: str
    message: QueueMessage
    extend_at: float


@dataclasses.dataclass
class _Running:
    job: Job
    process: multiprocessing.Process
    started: float
    started_at: dt.datetime
    extend_at: float
    peak_kb: int = 0
    killed_for: str | None = None


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        queue: Queue,
        stages: Iterable[str] = DEFAULT_STAGES,
        concurrency: int | None = None,
        isolation: str | None = None,
        include_dlqs: bool = True,
        on_finish: Callable[[Finished], None] | None = None,
    ) -> None:
        self.queues = serving_order(stages, include_dlqs)
        self.settings = settings
        self.queue = queue
        self.concurrency = concurrency or settings.worker_concurrency
        self.isolation = isolation or settings.worker_isolation
        self.ctx = multiprocessing.get_context(self.isolation)
        if self.isolation == "forkserver":
            self.ctx.set_forkserver_preload(FORKSERVER_PRELOAD)
        self.on_finish = on_finish
        self.running: dict[int, _Running] = {}
        self.finished: collections.deque[Finished] = collections.deque(maxlen=FINISHED_KEPT)
        self.counts: collections.Counter[str] = collections.Counter()  # outcome -> children, all time
        self._aux: list[multiprocessing.Process] = []
        self._held: collections.deque[_Held] = collections.deque()
        self._signals = 0
        self._grace_deadline = 0.0
        self._rotation = 0
        self._empty: dict[str, tuple[int, float]] = {}  # queue -> (empty receives in a row, ask again at)
        self._tmp_root: Path | None = None

    # --- the loop --------------------------------------------------------------------

    def run(self, burst: bool = False, max_messages: int | None = None, restore_signals: bool = True) -> list[Finished]:
        """Serve until signalled; with ``burst``, until every queue is empty and settled. Returns
        the last FINISHED_KEPT children's ends (``counts`` has the totals).

        ``restore_signals=False`` (the CLI) keeps this worker's handlers after the loop, so a
        late SIGTERM during exit is counted, not fatal."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self._tmp_root = Path(tempfile.mkdtemp(prefix="docpipe-worker-", dir=self.settings.worker_tmp_dir))
        started = 0
        # Serving (not draining): erasure scans, as the purge function's schedule on Lambda.
        timer = ScanTimer(self.queue, self.queues, 0 if burst else self.settings.erasure_scan_s)
        try:
            while True:
                ended = self._collect()
                if not self._signals:
                    self._start_held()  # before the ended children's deletes: a slot is free now
                for run in ended:
                    self._finish(run, run.process.exitcode)
                    run.process.close()
                self._watch()
                if not self._signals:
                    timer.tick()
                if self._signals:
                    self._release_held()
                    if not self.running:
                        break
                    if time.monotonic() >= self._grace_deadline:
                        self._kill_all("shutdown")
                    self._wait(_TICK_S)
                    continue
                budget = self.concurrency + PREFETCH - len(self.running) - len(self._held)
                if max_messages is not None:
                    budget = min(budget, max_messages - started)
                got = self._receive_and_start(budget, long_poll=not burst and not self.running) if budget > 0 else 0
                started += got
                if max_messages is not None and started >= max_messages and not self.running and not self._held:
                    break
                if got == 0:
                    if not self.running and not self._held and burst and self._idle():
                        break
                    self._wait(_TICK_S if self.running else 0.5)
        finally:
            self._release_held()
            self._kill_all("shutdown")
            while self.running:
                self._reap()
                self._wait(_TICK_S)
            for proc in self._aux:
                proc.join(timeout=30)
            if restore_signals:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            shutil.rmtree(self._tmp_root, ignore_errors=True)
        return list(self.finished)

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals == 1:
            self._grace_deadline = time.monotonic() + self.settings.shutdown_grace_s
            logger.warning("shutting down: no new messages", extra={"signal": signum, "running": len(self.running)})
        else:
            # Second signal: no more grace. The loop releases the messages as it reaps.
            self._kill_all("shutdown")

    def _receive_and_start(self, budget: int, long_poll: bool) -> int:
        started = 0
        order = self.queues[self._rotation :] + self.queues[: self._rotation]
        self._rotation = (self._rotation + 1) % len(self.queues)
        # Not while a preprocess child runs: it sends OCR messages as its pages are stored, and a
        # free slot takes the first at the next tick (a backed-off OCR queue started the first page
        # 0.2-0.3 s later at concurrency 2). Other children's messages wait for their end.
        backing_off = bool(self.running) and all(
            run.job.queue != Stage.PREPROCESS.value for run in self.running.values()
        )
        if not backing_off:
            self._empty.clear()
        now = time.monotonic()
        for index, queue in enumerate(order):
            if budget - started <= 0 or self._signals:
                break
            # Half a tick early counts as due: the loop's ticks run a little over _TICK_S apart.
            if backing_off and self._empty.get(queue, (0, 0.0))[1] - _TICK_S / 2 > now:
                continue
            # Long-poll only the last queue of an idle round: cheap on SQS, quick to react.
            wait = self.settings.worker_poll_wait_s if long_poll and index == len(order) - 1 else 0
            try:
                messages = self.queue.receive(
                    queue, max_messages=budget - started, wait_s=wait, visibility_s=self.settings.visibility_timeout_s
                )
            except PipelineError as exc:
                logger.warning("receive failed", extra={"queue": queue, "error_code": exc.code})
                time.sleep(1.0)
                continue
            if messages:
                self._empty.pop(queue, None)
            elif backing_off:
                misses = self._empty.get(queue, (0, 0.0))[0] + 1
                self._empty[queue] = (misses, now + min(_TICK_S * 2 ** min(misses - 1, 8), EMPTY_POLL_MAX_S))
            for message in messages:
                if self._signals:
                    # SIGTERM came during the long poll: this worker starts nothing more, so
                    # the message goes back at once, for a worker that stays.
                    self._release(queue, message, 0)
                    continue
                if len(self.running) < self.concurrency:
                    self._start(queue, message)
                else:
                    extend_at = time.monotonic() + self.settings.visibility_timeout_s / 3
                    self._held.append(_Held(queue, message, extend_at))
                started += 1
        return started

    def _start_held(self) -> None:
        while self._held and len(self.running) < self.concurrency:
            held = self._held.popleft()
            self._start(held.queue, held.message)

    def _release_held(self) -> None:
        """Held messages go back at once (shutdown): none of them started."""
        while self._held:
            held = self._held.popleft()
            self._release(held.queue, held.message, 0)

    def _start(self, queue: str, message: QueueMessage) -> None:
        tmpdir = tempfile.mkdtemp(prefix=f"{queue}-", dir=self._tmp_root)
        module = STAGE_HANDLERS.get(queue, FAILURES_HANDLER)
        job = Job(
            queue=queue,
            handler_module=module,
            message=message,
            queue_arn=queue_arn(self.settings.aws_region, f"{self.settings.queue_prefix}-{queue}"),
            settings=self.settings,
            tmpdir=tmpdir,
            timeout_s=self.settings.stage_timeout_s,
        )
        process = self.ctx.Process(target=run_job, args=(job,), name=f"docpipe-{queue}")
        try:
            process.start()
        except Exception as exc:  # noqa: BLE001 - the fork server can die; the message must not
            logger.error("could not start a child", extra={"queue": queue, "error": type(exc).__name__})
            shutil.rmtree(tmpdir, ignore_errors=True)
            self._release(queue, message, 1)
            return
        now = time.monotonic()
        self.running[process.pid] = _Running(
            job=job,
            process=process,
            started=now,
            started_at=dt.datetime.now(dt.timezone.utc),
            extend_at=now + self.settings.visibility_timeout_s / 3,
        )

    # --- watching children -----------------------------------------------------------

    def _watch(self) -> None:
        now = time.monotonic()
        cap_kb = self.settings.child_memory_mb * 1024
        for held in self._held:
            if now >= held.extend_at:  # a message held while a long child runs stays ours
                self._release(held.queue, held.message, self.settings.visibility_timeout_s)
                held.extend_at = now + self.settings.visibility_timeout_s / 3
        for pid, run in list(self.running.items()):
            rss_kb, hwm_kb = _rss_kb(pid)
            run.peak_kb = max(run.peak_kb, hwm_kb)
            if run.killed_for:
                continue
            if now > self._deadline(run):
                self._kill(run, "timeout")
            elif rss_kb > cap_kb:
                self._kill(run, "memory")
            elif now >= run.extend_at:
                # Heartbeat: keep the message invisible while its child works.
                try:
                    self.queue.release(run.job.queue, run.job.message.receipt_handle, self.settings.visibility_timeout_s)
                except PipelineError as exc:
                    logger.warning("heartbeat failed", extra={"queue": run.job.queue, "error_code": exc.code})
                run.extend_at = now + self.settings.visibility_timeout_s / 3

    def _deadline(self, run: _Running) -> float:
        """When the child's stage timeout runs out (``time.monotonic``): ``_watch`` kills it past
        this, and ``_wait`` wakes no later."""
        return run.started + self.settings.stage_timeout_s

    def _kill(self, run: _Running, reason: str) -> None:
        run.killed_for = run.killed_for or reason
        pid = run.process.pid
        run.peak_kb = max(run.peak_kb, _rss_kb(pid)[1])
        if not _is_child_pid(pid):
            return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)  # not yet in its own group
            except ProcessLookupError:
                pass

    def _kill_all(self, reason: str) -> None:
        for run in list(self.running.values()):
            if run.process.exitcode is None:
                self._kill(run, reason)

    def _wait(self, timeout: float) -> None:
        """Until a child ends or ``timeout`` passes, whichever is first, but no later than the
        earliest running child's deadline: a stage's timeout is kept to the moment, not a tick
        late (a child that ended meanwhile would have counted as succeeded)."""
        sentinels = [run.process.sentinel for run in self.running.values()]
        if sentinels:
            deadlines = [self._deadline(run) for run in self.running.values() if not run.killed_for]
            if deadlines:
                timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
            multiprocessing.connection.wait(sentinels, timeout)
        else:
            time.sleep(timeout)

    def _reap(self) -> None:
        for run in self._collect():
            self._finish(run, run.process.exitcode)
            run.process.close()

    def _collect(self) -> list[_Running]:
        """The children that ended, joined and out of ``running`` (their ends not yet handled)."""
        ended = []
        for pid, run in list(self.running.items()):
            if run.process.is_alive():
                continue
            run.process.join()
            del self.running[pid]
            # Anything the child started and left behind (a Tesseract it did not reap when it
            # was killed) is in its process group: end it with the child.
            try:
                if _is_child_pid(pid):
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            ended.append(run)
        if ended:
            # What the ended children sent is waiting now: ask every stage queue again. Not the
            # dead-letter queues, which keep their backoff: no child sends to one (SQS moves a
            # message there on a receive), and a round over all eight queues at each child's end
            # was most of the parent's receives (the 142-page scan: 175, ~1 s of its CPU).
            for queue in [q for q in self._empty if q in STAGE_HANDLERS]:
                del self._empty[queue]
        self._aux = [p for p in self._aux if p.is_alive()]
        return ended

    def _finish(self, run: _Running, exitcode: int) -> None:
        job, message = run.job, run.job.message
        result = read_result(job.tmpdir)
        peak_kb = max(run.peak_kb, (result or {}).get("maxrss_kb", 0))
        shutil.rmtree(job.tmpdir, ignore_errors=True)
        duration = time.monotonic() - run.started
        if exitcode == EXIT_OK and not run.killed_for:
            outcome = "succeeded"
            try:
                self.queue.delete(job.queue, message.receipt_handle)
            except PipelineError as exc:
                # Redelivered later; the handlers are idempotent, so that costs a skip.
                logger.warning("delete failed", extra={"queue": job.queue, "error_code": exc.code})
        else:
            outcome = f"killed:{run.killed_for}" if run.killed_for else ("crashed" if exitcode < 0 else "failed")
            hint = (result or {}).get("retry_after_s")
            delay = (
                0
                if run.killed_for == "shutdown"
                else backoff_s(message.receive_count, self.settings.retry_delay_s, hint, self.settings.retry_max_delay_s)
            )
            self._release(job.queue, message, delay)
            if run.killed_for or exitcode < 0 or result is None:
                self._record_abnormal(run, exitcode, peak_kb, duration)
        shell_file_id = shell_file_id_of(message.body)
        finished = Finished(
            queue=job.queue,
            message_id=message.message_id,
            shell_file_id=str(shell_file_id) if shell_file_id else None,
            exitcode=exitcode,
            outcome=outcome,
            duration_s=duration,
            peak_rss_kb=peak_kb,
        )
        self.finished.append(finished)
        self.counts[outcome] += 1
        log = logger.info if outcome == "succeeded" else logger.warning
        log("child finished", extra={"queue": job.queue, "message_id": message.message_id, "outcome": outcome,
                                     "exitcode": exitcode, "duration_ms": round(duration * 1000, 1),
                                     "peak_rss_kb": peak_kb})
        if self.on_finish:
            self.on_finish(finished)

    def _release(self, queue: str, message: QueueMessage, delay_s: int) -> None:
        try:
            self.queue.release(queue, message.receipt_handle, delay_s)
        except PipelineError as exc:
            # Still safe: the visibility timeout runs out and SQS delivers it again.
            logger.warning("release failed", extra={"queue": queue, "error_code": exc.code})

    def _record_abnormal(self, run: _Running, exitcode: int, peak_kb: int, duration: float) -> None:
        """A child that was killed could not write its pipeline_runs row: a short-lived helper
        process does (the parent keeps no database driver loaded)."""
        code = {"timeout": "timeout", "memory": "memory_cap", "shutdown": "shutdown"}.get(run.killed_for or "", None)
        code = code or ("killed" if exitcode < 0 else "crash")
        stage = run.job.queue.removesuffix("-dlq")
        pipeline_run = PipelineRun(
            stage=Stage(stage),
            shell_file_id=shell_file_id_of(run.job.message.body),
            message_id=run.job.message.message_id,
            attempt=run.job.message.receive_count,
            outcome="retry",
            error_code=code,
            started_at=run.started_at,
            duration_ms=duration * 1000,
            peak_rss_kb=peak_kb,
        )
        proc = self.ctx.Process(target=record_abnormal_end, args=(self.settings, pipeline_run), name="docpipe-ledger")
        try:
            proc.start()
            self._aux.append(proc)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not record an abnormal end", extra={"error": type(exc).__name__})

    def _idle(self) -> bool:
        try:
            return all(sum(self.queue.depth(q)) == 0 for q in self.queues)
        except PipelineError:
            return False


def _is_child_pid(pid: int | None) -> bool:
    """Whether ``pid`` can be a child's, to signal its group: os.killpg(0) is this process's own
    group, and os.killpg(1) is kill(-1), every process this one may signal."""
    return pid is not None and pid > 1


def _rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB from /proc; zeros once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return rss, hwm

