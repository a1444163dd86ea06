"""The in-process poll loop: receive, call the stage's ``lambda_handler`` with a Lambda-shaped
event, delete what succeeded, release what failed with backoff.

This is the plain loop of the backbone (``docpipe worker`` and ``docpipe process``); the
process-per-message runtime replaces the call in ``_invoke`` without changing the rest.
Dead-letter queues are consumed too, by ``handlers.failures``, so a message that exhausted
its deliveries marks its file failed instead of vanishing. A worker that serves the purge stage
and is not draining (``burst``) asks for an erasure scan at start and every ERASURE_SCAN_S
(``ScanTimer``): what Lambda's schedule does for the purge function.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable

from shared.bootstrap import Deps
from shared.models import ScanMessage, Stage
from shared.observability import logger
from shared.ports import Queue, QueueMessage, dlq_name
from shared.retry import MAX_BACKOFF_S, MAX_DELAY_S, backoff_s  # noqa: F401 - re-exported
from shared.runtime.events import LocalContext, queue_arn, sqs_event

STAGE_HANDLERS = {
    "preprocess": "handlers.preprocess",
    "ocr": "handlers.ocr",
    "discover": "handlers.discover",
    "purge": "handlers.purge",
}
FAILURES_HANDLER = "handlers.failures"
DEFAULT_STAGES = ("preprocess", "ocr", "discover", "purge")

OnBatch = Callable[[str, list[QueueMessage], set[str]], None]


def serving_order(stages: Iterable[str], include_dlqs: bool) -> list[str]:
    """The queues a worker serves: erasures first, then downstream stages, so documents already
    under way finish before new ones start, then their dead-letter queues."""
    stages = list(stages)
    unknown = set(stages) - set(STAGE_HANDLERS)
    if unknown:
        raise ValueError(f"unknown stages: {sorted(unknown)}")
    order = [s for s in ("purge", "discover", "ocr", "preprocess") if s in stages]
    return order + ([dlq_name(s) for s in order] if include_dlqs else [])


class ScanTimer:
    """Sends a ``ScanMessage`` to the purge queue at start and every ``interval_s`` (0: never),
    for a worker that serves the purge stage. Several workers each scanning is harmless: a
    purge holds its erasure's lease."""

    def __init__(self, queue: Queue, queues: list[str], interval_s: float) -> None:
        self.queue = queue
        self.enabled = Stage.PURGE.value in queues and interval_s > 0
        self.interval_s = interval_s
        self.next_at = 0.0

    def tick(self) -> None:
        if not self.enabled or time.monotonic() < self.next_at:
            return
        try:
            self.queue.send(Stage.PURGE.value, ScanMessage())
        except Exception as exc:  # noqa: BLE001 - the next tick tries again
            logger.warning("could not ask for an erasure scan", extra={"error": type(exc).__name__})
        self.next_at = time.monotonic() + self.interval_s


class Worker:
    def __init__(
        self,
        deps: Deps,
        stages: Iterable[str] = DEFAULT_STAGES,
        batch_size: int = 1,
        include_dlqs: bool = True,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.deps = deps
        self.queues = serving_order(stages, include_dlqs)
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.handled = 0

    def _handler(self, queue: str):
        module = FAILURES_HANDLER if queue not in STAGE_HANDLERS else STAGE_HANDLERS[queue]
        return importlib.import_module(module).lambda_handler

    def _invoke(self, queue: str, messages: list[QueueMessage]) -> set[str]:
        """Call the handler; return the ids of the records that failed."""
        settings = self.deps.settings
        arn = queue_arn(settings.aws_region, f"{settings.queue_prefix}-{queue}")
        event = sqs_event(messages, arn, settings.aws_region)
        try:
            response = self._handler(queue)(event, LocalContext(function_name=f"docpipe-{queue}"))
        except Exception as exc:  # noqa: BLE001 - a handler that raises fails its whole batch
            logger.error("handler raised", extra={"queue": queue, "error": type(exc).__name__})
            return {m.message_id for m in messages}
        return {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}

    def poll_once(self, wait_s: int = 0) -> int:
        """One pass over every queue; return how many messages were handled."""
        handled = 0
        for queue in self.queues:
            messages = self.deps.queue.receive(queue, max_messages=self.batch_size, wait_s=wait_s)
            if not messages:
                continue
            failed = self._invoke(queue, messages)
            for m in messages:
                if m.message_id in failed:
                    from shared.runtime.records import retry_hint  # the handlers' module: loaded by now

                    settings = self.deps.settings
                    delay = backoff_s(m.receive_count, settings.retry_delay_s, retry_hint(m.message_id),
                                      settings.retry_max_delay_s)
                    self.deps.queue.release(queue, m.receipt_handle, delay)
                else:
                    self.deps.queue.delete(queue, m.receipt_handle)
            handled += len(messages)
            if self.on_batch:
                self.on_batch(queue, messages, failed)
        self.handled += handled
        return handled

    def idle(self) -> bool:
        """No message visible or in flight on any queue this worker serves."""
        return all(sum(self.deps.queue.depth(q)) == 0 for q in self.queues)

    def run(self, burst: bool = False, max_messages: int | None = None, idle_sleep_s: float = 0.5) -> int:
        """Serve until stopped; with ``burst``, until every queue is empty and settled."""
        timer = ScanTimer(self.deps.queue, self.queues, 0 if burst else self.deps.settings.erasure_scan_s)
        while max_messages is None or self.handled < max_messages:
            timer.tick()
            if self.poll_once() == 0:
                if burst and self.idle():
                    break
                time.sleep(idle_sleep_s)
        return self.handled
