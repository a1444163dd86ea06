"""Lambda, locally: a template's functions behind their SQS event source mappings, run as
Lambda runs them.

- ``ExecutionEnvironment``: one process per environment (``lambda_bootstrap.py``), started
  cold (the handler's module imported, Init Duration timed), reused warm, frozen with SIGSTOP
  between invocations and thawed with SIGCONT for the next; killed and discarded at the
  function's ``Timeout``, or when its resident memory (the process and its children, sampled
  every 10 ms) passes ``MemorySize``. Its environment is the one the template resolves for
  the function plus what Lambda itself sets and the local endpoints and credentials: nothing
  of the emulator's own environment leaks in.
- ``EventSourceMapping``: one per SQS event, with Lambda's semantics. ``BatchSize`` records
  at most, gathered for up to ``MaximumBatchingWindowInSeconds``; at most
  ``ScalingConfig.MaximumConcurrency`` invocations at once. A returned response with
  ``ReportBatchItemFailures``: the listed records stay, the rest are deleted (a malformed
  list fails the whole batch, as Lambda does); without it, a returned response deletes the
  batch. A raised error, a timeout or running out of memory deletes nothing: the batch comes
  back after the queue's visibility timeout, and after maxReceiveCount the queue's redrive
  policy moves it on.
- ``ScheduledRule``: a ``Schedule`` event, as EventBridge runs a rate rule: the function invoked
  with a "Scheduled Event" every period, the first one period after the start.
- ``LambdaEmulator``: the queues of the template (names, VisibilityTimeout, redrive policy
  with its maxReceiveCount, the DLQ chain to the terminal queue), the mappings, the rules, the
  environments, and a Lambda-style ``REPORT`` line per invocation on ``report``.

Long (~680 lines) because the three are one contract: what a mapping deletes depends on how
an environment ended, and what an environment is sent depends on the mapping's batch; split
apart, each half would need the other's internals.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import IO

from shared.runtime.lambda_template import ACCOUNT, FunctionSpec, LocalTemplate, ScheduleEventSpec, SqsEventSpec

BOOTSTRAP = Path(__file__).with_name("lambda_bootstrap.py")
# Lambda's x86 on-demand prices (us-east-1, first tier): compute per GB-second, and requests.
USD_PER_GB_S = 0.0000166667
USD_PER_REQUEST = 0.20 / 1_000_000
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
_MEMORY_SAMPLE_S = 0.01
_RECEIVE_WAIT_S = 1  # long poll per receive; short so that stop() is prompt


@dataclasses.dataclass
class Invocation:
    function: str
    request_id: str
    records: int
    cold: bool
    init_ms: float | None
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: float
    status: str  # ok | error | timeout | out_of_memory | crashed | init_error
    error: str | None = None
    response: dict | None = None

    @property
    def gb_s(self) -> float:
        return self.billed_ms / 1000 * self.memory_mb / 1024

    def report_line(self) -> str:
        line = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {self.billed_ms} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {math.ceil(self.max_memory_mb)} MB"
        )
        if self.init_ms is not None:
            line += f"\tInit Duration: {self.init_ms:.2f} ms"
        if self.status != "ok":
            line += f"\tStatus: {self.status}" + (f"\tError Type: {self.error}" if self.error else "")
        return line


class EnvironmentGone(Exception):
    """The environment died or was killed; it is discarded."""


class ExecutionEnvironment:
    """One execution environment of a function: a process that imported the handler."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], log: IO, python: str = sys.executable) -> None:
        self.spec = spec
        self.env = env
        self.log = log
        self.python = python
        self.init_ms: float | None = None
        self.invocations = 0
        self.alive = False
        self._proc: subprocess.Popen | None = None
        self._inbox = None
        self._outbox = None
        self._max_rss_kb = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, deadline: float) -> None:
        """The cold start: a new process imports the handler's module (raises EnvironmentGone)."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [self.python, str(BOOTSTRAP), str(to_child_r), str(from_child_w), self.spec.handler],
                env=self.env,
                cwd=self.spec.code_dir,
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=self.log,
                pass_fds=(to_child_r, from_child_w),
                start_new_session=True,  # its process group dies with it
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._inbox = os.fdopen(to_child_w, "w", encoding="utf-8")
        self._outbox = os.fdopen(from_child_r, "r", encoding="utf-8")
        self.alive = True
        message = self._await(deadline, watch_memory=True)
        if message.get("type") != "ready":
            self.kill()
            raise EnvironmentGone(message.get("error") or "init failed")
        self.init_ms = float(message["init_ms"])

    def invoke(self, event: dict, request_id: str, timeout_s: float) -> tuple[str, dict | None, str | None]:
        """(status, response, error type) of one invocation, the environment thawed for it."""
        deadline = time.monotonic() + timeout_s
        self.thaw()
        self.invocations += 1
        try:
            self._inbox.write(
                json.dumps(
                    {
                        "type": "invoke",
                        "request_id": request_id,
                        "event": event,
                        "deadline_ms": int(time.time() * 1000 + timeout_s * 1000),
                        "function_arn": f"arn:aws:lambda:{self.env.get('AWS_REGION', 'us-east-1')}:{ACCOUNT}:function:"
                        f"{self.env.get('AWS_LAMBDA_FUNCTION_NAME', self.spec.logical_id)}",
                        "trace_id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                    }
                )
                + "\n"
            )
            self._inbox.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return "crashed", None, "Runtime.ExitError"
        try:
            message = self._await(deadline, watch_memory=True)
        except EnvironmentGone as gone:
            return str(gone), None, {"timeout": "Sandbox.Timedout", "out_of_memory": "Runtime.OutOfMemory"}.get(
                str(gone), "Runtime.ExitError"
            )
        if message.get("type") == "result":
            return "ok", message.get("response"), None
        return "error", None, message.get("error")

    def _await(self, deadline: float, watch_memory: bool) -> dict:
        """The runtime's next message; kills the environment at the deadline or the memory cap."""
        limit_kb = self.spec.memory_mb * 1024
        while True:
            if watch_memory:
                rss = self.rss_kb()
                self._max_rss_kb = max(self._max_rss_kb, rss)
                if rss > limit_kb:
                    self.kill()
                    raise EnvironmentGone("out_of_memory")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise EnvironmentGone("timeout")
            ready, _, _ = select.select([self._outbox], [], [], min(_MEMORY_SAMPLE_S, remaining))
            if ready:
                line = self._outbox.readline()
                if not line:
                    self.kill()
                    raise EnvironmentGone("crashed")
                message = json.loads(line)
                self._max_rss_kb = max(self._max_rss_kb, int(message.get("max_rss_kb") or 0))
                return message

    def take_max_memory_mb(self) -> float:
        """The most memory the environment held since the last call (then starts over)."""
        peak = self._max_rss_kb
        self._max_rss_kb = self.rss_kb() if self.alive else 0
        return peak / 1024

    def rss_kb(self) -> int:
        if self._proc is None:
            return 0
        total, todo, seen = 0, [self._proc.pid], set()
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * _PAGE_KB
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                continue
        return total

    def freeze(self) -> None:
        """Between invocations Lambda freezes the environment: no thread of it runs."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGSTOP)
            deadline = time.monotonic() + 1.0
            while self.state() not in ("T", "t", "gone") and time.monotonic() < deadline:
                time.sleep(0.001)  # the signal is delivered asynchronously

    def thaw(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.alive = False
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGCONT)
        self._proc.wait()
        for pipe in (self._inbox, self._outbox):
            with contextlib.suppress(OSError):
                pipe.close()

    def state(self) -> str:
        """The process's state letter from /proc (T: stopped, i.e. frozen)."""
        try:
            with open(f"/proc/{self._proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, AttributeError):
            return "gone"


class Function:
    """A function's environments: warm ones are reused, frozen, before a new one starts cold."""

    def __init__(self, spec: FunctionSpec, env: dict[str, str], log: IO, emulator: LambdaEmulator) -> None:
        self.spec = spec
        self.env = env
        self.log = log
        self.emulator = emulator
        self._idle: deque[ExecutionEnvironment] = deque()
        self._all: list[ExecutionEnvironment] = []
        self._lock = threading.Lock()

    def invoke(self, event: dict) -> Invocation:
        request_id = str(uuid.uuid4())
        t0 = time.monotonic()
        # Lambda gives the init phase 10 s, and a slower one another go within the timeout;
        # the invocation itself always has the whole Timeout.
        init_deadline = t0 + max(10.0, self.spec.timeout_s)
        with self._lock:
            environment = self._idle.pop() if self._idle else None
        cold = environment is None
        init_ms = None
        if cold:
            environment = ExecutionEnvironment(self.spec, self.env, self.log)
            with self._lock:
                self._all.append(environment)
            try:
                environment.start(init_deadline)
                init_ms = environment.init_ms
            except EnvironmentGone as gone:
                return self._finish(environment, request_id, event, True, None, t0, "init_error", None, str(gone))
        self._line(f"START RequestId: {request_id} Version: $LATEST")
        status, response, error = environment.invoke(event, request_id, self.spec.timeout_s)
        return self._finish(environment, request_id, event, cold, init_ms, t0, status, response, error)

    def _finish(self, environment, request_id, event, cold, init_ms, t0, status, response, error) -> Invocation:
        total_ms = (time.monotonic() - t0) * 1000
        duration_ms = total_ms - (init_ms or 0)
        if status == "timeout":
            duration_ms = self.spec.timeout_s * 1000
        # Lambda bills a managed runtime's init phase with the first invocation (since 2025-08).
        billed_ms = math.ceil(duration_ms + (init_ms or 0))
        invocation = Invocation(
            function=self.spec.logical_id,
            request_id=request_id,
            records=len(event.get("Records") or []),
            cold=cold,
            init_ms=init_ms,
            duration_ms=duration_ms,
            billed_ms=billed_ms,
            memory_mb=self.spec.memory_mb,
            max_memory_mb=environment.take_max_memory_mb(),
            status=status,
            error=error,
            response=response,
        )
        if status == "timeout":
            self._line(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {request_id} Task timed out after "
                       f"{self.spec.timeout_s:.2f} seconds")
        self._line(f"END RequestId: {request_id}")
        self._line(invocation.report_line())
        self.emulator.record(invocation)
        if environment.alive:
            environment.freeze()
            with self._lock:
                self._idle.append(environment)
        else:
            with self._lock:
                with contextlib.suppress(ValueError):
                    self._all.remove(environment)
        return invocation

    def _line(self, text: str) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.log.write(text + "\n")
            self.log.flush()

    def environments(self) -> list[ExecutionEnvironment]:
        with self._lock:
            return list(self._all)

    def shutdown(self) -> None:
        with self._lock:
            environments, self._all = self._all, []
            self._idle.clear()
        for environment in environments:
            environment.kill()


class EventSourceMapping:
    """An SQS event source mapping: pollers that receive batches and invoke the function."""

    def __init__(self, function: Function, event: SqsEventSpec, queue_url: str, queue_arn: str, sqs, region: str,
                 concurrency_cap: int | None = None) -> None:
        self.function = function
        self.event = event
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.sqs = sqs
        self.region = region
        # Lambda's default for an SQS mapping without a cap is up to 1,000 at once; a laptop
        # gets the cap it asks for.
        concurrency = event.maximum_concurrency or 1000
        self.concurrency = min(concurrency, concurrency_cap) if concurrency_cap else min(concurrency, 32)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._poll, name=f"esm-{self.function.spec.logical_id}-{self.event.name}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def halt(self) -> None:
        """No new batches; one being handled finishes."""
        self._stop.set()

    def stop(self, wait_s: float) -> None:
        self.halt()
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                messages = self._receive_batch()
            except Exception as exc:  # noqa: BLE001 - the queue endpoint blinked: poll again
                self.function.emulator.note(f"{self.event.name}: receive failed ({type(exc).__name__})")
                self._stop.wait(1.0)
                continue
            if not messages:
                continue
            invocation = self.function.invoke(self._event(messages))
            self._settle(messages, invocation)

    def _receive_batch(self) -> list[dict]:
        messages: list[dict] = []
        window_ends = time.monotonic() + self.event.batching_window_s
        while not self._stop.is_set() and len(messages) < self.event.batch_size:
            wait = _RECEIVE_WAIT_S if not messages else max(0, min(_RECEIVE_WAIT_S, math.ceil(window_ends - time.monotonic())))
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.event.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(got)
            if messages and (self.event.batching_window_s <= 0 or time.monotonic() >= window_ends):
                break
        return messages

    def _event(self, messages: list[dict]) -> dict:
        return {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": m.get("MessageAttributes", {}),
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.queue_arn,
                    "awsRegion": self.region,
                }
                for m in messages
            ]
        }

    def _settle(self, messages: list[dict], invocation: Invocation) -> None:
        if invocation.status != "ok":
            return  # nothing deleted: the visibility timeout brings the batch back
        keep: set[str] = set()
        if self.event.report_batch_item_failures:
            keep = _listed_failures(invocation.response, {m["MessageId"] for m in messages})
            if keep is None:
                return  # a malformed response fails the whole batch
        done = [m for m in messages if m["MessageId"] not in keep]
        for start in range(0, len(done), 10):
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])]
            try:
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:  # noqa: BLE001 - undeleted: the message comes again, as on Lambda
                self.function.emulator.note(f"{self.event.name}: delete failed ({type(exc).__name__})")


class ScheduledRule:
    """An EventBridge rule with a rate schedule that targets the function: an asynchronous
    invocation each period (``interval_s`` in its place locally), the first one period after the
    start, as a new rule fires."""

    def __init__(self, function: Function, schedule: ScheduleEventSpec, region: str,
                 interval_s: float | None = None) -> None:
        self.function = function
        self.schedule = schedule
        self.region = region
        self.interval_s = interval_s or schedule.rate_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"rule-{self.function.spec.logical_id}-{self.schedule.name}", daemon=True
        )
        self._thread.start()

    def halt(self) -> None:
        self._stop.set()

    def stop(self, wait_s: float) -> None:
        self.halt()
        if self._thread is not None:
            self._thread.join(wait_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            # An asynchronous invocation: its result goes nowhere (Lambda would retry a failed
            # one twice; the next period does as much here).
            self.function.invoke(self._event())

    def _event(self) -> dict:
        rule = f"docpipe-local-{self.function.spec.logical_id}-{self.schedule.name}"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": self.region,
            "resources": [f"arn:aws:events:{self.region}:{ACCOUNT}:rule/{rule}"],
            "detail": {},
        }


def _listed_failures(response, batch_ids: set[str]) -> set[str] | None:
    """The ids a partial batch response lists, or None when Lambda would fail the whole batch."""
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    listed = set()
    for item in items:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            return None
        listed.add(identifier)
    return listed


class LambdaEmulator:
    """A template's queues, functions and event source mappings on a local SQS endpoint."""

    def __init__(
        self,
        template: LocalTemplate,
        sqs,
        local_env: dict[str, str],
        logs_dir: Path | None = None,
        report: IO | None = None,
        concurrency_cap: int | None = None,
        credentialed_env: dict[str, tuple[tuple[str, ...], dict[str, str]]] | None = None,
        schedule_interval_s: float | None = None,
    ) -> None:
        self.template = template
        self.sqs = sqs
        self.local_env = local_env
        # service -> (variables that give a function that service's credentials, the local
        # endpoint): a stand-in for a service's public endpoint goes only to the functions the
        # template gives credentials for it. Elsewhere, as when deployed, it is not configured.
        self.credentialed_env = credentialed_env or {}
        self.logs_dir = logs_dir
        self.report = report
        self.concurrency_cap = concurrency_cap
        self.invocations: list[Invocation] = []
        self.queue_urls: dict[str, str] = {}
        self.functions: dict[str, Function] = {}
        self.mappings: list[EventSourceMapping] = []
        self.rules: list[ScheduledRule] = []
        self.schedule_interval_s = schedule_interval_s
        self._logs: list[IO] = []
        self._lock = threading.Lock()

    # --- queues ------------------------------------------------------------------------

    def create_queues(self) -> dict[str, str]:
        """Every AWS::SQS::Queue of the template, dead-letter targets first; logical id -> URL."""
        created: dict[str, str] = {}
        pending = dict(self.template.queues)
        while pending:
            ready = [q for q in pending.values() if not q.dead_letter_target or q.dead_letter_target in created]
            if not ready:
                raise ValueError("the template's redrive policies form a cycle")
            for spec in ready:
                url = self.sqs.create_queue(QueueName=spec.name)["QueueUrl"]
                # create_queue keeps an existing queue's attributes: set them as the template says.
                self.sqs.set_queue_attributes(QueueUrl=url, Attributes=spec.attributes(self.template.queue_arn))
                created[spec.logical_id] = url
                del pending[spec.logical_id]
        self.queue_urls = created
        return created

    # --- functions ---------------------------------------------------------------------

    def function_env(self, spec: FunctionSpec) -> dict[str, str]:
        """The environment of one of ``spec``'s execution environments, as on Lambda."""
        name = f"docpipe-local-{spec.logical_id}"
        lambda_env = {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_REGION": self.template.region,
            "AWS_DEFAULT_REGION": self.template.region,
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
            "_HANDLER": spec.handler,
            "PYTHONPATH": str(spec.code_dir),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
        }
        env = {**lambda_env, **spec.environment, **self.local_env}
        for names, endpoint_env in self.credentialed_env.values():
            if any(name in spec.environment for name in names):
                env.update(endpoint_env)
        return env

    def start(self) -> None:
        if not self.queue_urls:
            self.create_queues()
        for spec in self.template.functions.values():
            if not spec.events and not spec.schedules:
                continue
            log = self._log_for(spec.logical_id)
            function = Function(spec, self.function_env(spec), log, self)
            self.functions[spec.logical_id] = function
            for schedule in spec.schedules:
                if schedule.enabled:
                    self.rules.append(ScheduledRule(function, schedule, self.template.region, self.schedule_interval_s))
            for event in spec.events:
                mapping = EventSourceMapping(
                    function,
                    event,
                    self.queue_urls[event.queue_logical_id],
                    self.template.queue_arn(event.queue_logical_id),
                    self.sqs,
                    self.template.region,
                    self.concurrency_cap,
                )
                self.mappings.append(mapping)
        for mapping in self.mappings:
            mapping.start()
        for rule in self.rules:
            rule.start()

    def stop(self, wait_s: float = 30.0) -> None:
        """Stop polling, let running invocations finish (up to ``wait_s``), end every environment."""
        for source in [*self.rules, *self.mappings]:
            source.halt()
        for source in [*self.rules, *self.mappings]:
            source.stop(wait_s)
        for function in self.functions.values():
            function.shutdown()
        for log in self._logs:
            if log not in (sys.stderr, sys.stdout):
                with contextlib.suppress(OSError):
                    log.close()

    def __enter__(self) -> LambdaEmulator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _log_for(self, logical_id: str) -> IO:
        if self.logs_dir is None:
            return sys.stderr
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.logs_dir / f"{logical_id}.log", "a", buffering=1)  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        return log

    # --- what happened -----------------------------------------------------------------

    def record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)
        if self.report is not None:
            with contextlib.suppress(ValueError, OSError):
                self.report.write(f"{invocation.function} {invocation.report_line()}\n")
                self.report.flush()

    def note(self, text: str) -> None:
        if self.report is not None:
            with contextlib.suppress(ValueError, OSError):
                self.report.write(f"docpipe lambda: {text}\n")
                self.report.flush()

    def summary(self, documents: int = 0, pages: int = 0, ocr_pages: int = 0) -> dict:
        with self._lock:
            invocations = list(self.invocations)
        functions = {}
        for logical_id, spec in self.template.functions.items():
            mine = [i for i in invocations if i.function == logical_id]
            if not mine and not spec.events and not spec.schedules:
                continue
            durations = sorted(i.duration_ms for i in mine)
            inits = sorted(i.init_ms for i in mine if i.init_ms is not None)
            gb_s = sum(i.gb_s for i in mine)
            functions[logical_id] = {
                "invocations": len(mine),
                "cold_starts": sum(i.cold for i in mine),
                "init_ms_p50": _percentile(inits, 50),
                "duration_ms_p50": _percentile(durations, 50),
                "duration_ms_p95": _percentile(durations, 95),
                "max_memory_mb": round(max((i.max_memory_mb for i in mine), default=0.0), 1),
                "memory_size_mb": spec.memory_mb,
                "failed_invocations": sum(i.status != "ok" for i in mine),
                "gb_s": round(gb_s, 4),
                "usd": gb_s * USD_PER_GB_S + len(mine) * USD_PER_REQUEST,
            }
        total_usd = sum(f["usd"] for f in functions.values())
        total_gb_s = sum(f["gb_s"] for f in functions.values())
        return {
            "functions": functions,
            "gb_s": round(total_gb_s, 4),
            "usd": total_usd,
            "documents": documents,
            "pages": pages,
            "ocr_pages": ocr_pages,
            "usd_per_document": total_usd / documents if documents else None,
            "usd_per_page": total_usd / pages if pages else None,
            "price": {"usd_per_gb_s": USD_PER_GB_S, "usd_per_request": USD_PER_REQUEST, "architecture": "x86_64"},
        }


def format_summary(summary: dict) -> str:
    lines = ["function              invocations  cold  p50 ms   p95 ms  max MB / size  GB-s      USD"]
    for name, f in summary["functions"].items():
        lines.append(
            f"{name:<22}{f['invocations']:>11}  {f['cold_starts']:>4}  {_ms(f['duration_ms_p50']):>6}  "
            f"{_ms(f['duration_ms_p95']):>7}  {f['max_memory_mb']:>6.0f} / {f['memory_size_mb']:<5} "
            f"{f['gb_s']:>8.3f}  {f['usd']:.6f}"
        )
    lines.append(f"Lambda compute: {summary['gb_s']:.3f} GB-s, ${summary['usd']:.6f} at x86 prices")
    if summary.get("documents"):
        lines.append(
            f"per document: ${summary['usd_per_document']:.6f}; per page: "
            + (f"${summary['usd_per_page']:.6f}" if summary.get("usd_per_page") else "-")
            + f" ({summary['documents']} documents, {summary['pages']} pages, {summary['ocr_pages']} OCR'd)"
        )
    return "\n".join(lines)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
