"""``OpenAiEncounters``: the ``EncounterProvider`` that puts the parts together. For each window
(``windows.read_windows_concurrently``, or ``windows.read_windows`` one after another) it sends
the ``prompt`` (``transport.complete``), checks the answer (``windows.check``), asks once more
with the reason when it is unusable, and keeps every answer in the window cache as soon as it is
paid for; then it finishes the encounters (``review.finish``), counts tokens and cost, and checks
the result builds a ``Manifest``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import openai
from pydantic import ValidationError

from shared.encounters import review
from shared.encounters.openai.prompt import MAX_PAGE_CHARS, context_window_messages, reask_messages, window_messages
from shared.encounters.openai.schema import BadAnswer, WindowAnswer
from shared.encounters.openai.transport import Throttle, Usage, build_client, complete
from shared.encounters.openai.windows import (
    Answered,
    Document,
    Draft,
    check,
    ask_windows_concurrently,
    read_windows,
    reconcile,
)
from shared.errors import ModelAnswerInvalidError
from shared.models import Discovery, Manifest, PageText
from shared.observability import logger
from shared.ports import EncounterProvider

MAX_ASKS = 2  # an answer that cannot be repaired is asked for once more, then the file fails


class OpenAiEncounters(EncounterProvider):
    """Encounters from an OpenAI-compatible chat model, in page windows, with strict structured output.

    ``client`` is an ``openai.OpenAI`` built with ``max_retries=0``. ``discover`` raises
    ``ThrottledError`` / ``DependencyUnavailableError`` (``retry_after_s`` = the endpoint's
    hint) for transient failures it could not wait out, ``ModelAnswerInvalidError`` for answers
    that stay unusable after one re-ask, ``ModelRequestRejectedError`` for a request the
    endpoint refuses as such.
    """

    name = "openai"
    caches_windows = True  # discover() takes a window_cache (handlers/discover.py)

    def __init__(
        self,
        client: openai.OpenAI,
        model: str,
        pages_per_window: int = 20,
        input_usd_per_mtok: float = 0.0,
        output_usd_per_mtok: float = 0.0,
        max_attempts: int = 3,
        max_wait_s: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        max_page_chars: int = MAX_PAGE_CHARS,
        window_mode: Literal["concurrent", "sequential"] = "concurrent",
        max_concurrency: int = 8,
        context_pages: int = 1,
    ) -> None:
        if pages_per_window < 1:
            raise ValueError("pages_per_window must be at least 1")
        if window_mode not in ("concurrent", "sequential"):
            raise ValueError(f"window_mode must be concurrent or sequential, not {window_mode!r}")
        self._client = client
        self.model = model
        self.pages_per_window = pages_per_window
        self.input_usd_per_mtok = input_usd_per_mtok
        self.output_usd_per_mtok = output_usd_per_mtok
        self.max_attempts = max(1, max_attempts)
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self.max_page_chars = max_page_chars
        self.window_mode = window_mode
        self.max_concurrency = max(1, max_concurrency)
        self.context_pages = max(1, context_pages)

    @classmethod
    def from_settings(cls, settings, api_key: str | None = None) -> OpenAiEncounters:
        key = api_key or (settings.openai_api_key.get_secret_value() if settings.openai_api_key else "")
        if not key and not settings.openai_base_url:
            raise ValueError("OPENAI_API_KEY is not set (ENCOUNTER_PROVIDER=openai needs it, or OPENAI_BASE_URL)")
        return cls(
            build_client(key, settings.openai_base_url, settings.openai_timeout_s),
            settings.openai_model,
            pages_per_window=settings.llm_pages_per_window,
            input_usd_per_mtok=settings.llm_input_usd_per_mtok,
            output_usd_per_mtok=settings.llm_output_usd_per_mtok,
            window_mode=settings.llm_window_mode,
            max_concurrency=settings.llm_max_concurrency,
            context_pages=settings.llm_context_pages,
        )

    # --- the document --------------------------------------------------------------------

    def discover(self, pages: list[PageText], window_cache: Any = None) -> Discovery:
        """``window_cache`` (``get(key)``, ``put(key, answer, input_tokens, output_tokens)``)
        keeps each answer as soon as it is paid for, keyed by the model and the exact request:
        a later call for the same document replays the answers it has and asks only the rest.
        It is called from the threads that read the windows side by side."""
        doc = Document(pages)
        usage = Usage()
        reading = _Reading(doc, usage, window_cache, Throttle())
        started = time.perf_counter()
        if self.window_mode == "sequential":  # each window placed as it is answered
            drafts, window_count = read_windows(
                doc, self.pages_per_window, lambda window, carried: self._ask(reading, window, carried=carried)
            )
            read_ms = (time.perf_counter() - started) * 1000
        else:
            answers = ask_windows_concurrently(
                doc,
                self.pages_per_window,
                lambda window, context: self._ask(reading, window, context=context),
                self.max_concurrency,
                self.context_pages,
            )
            read_ms = (time.perf_counter() - started) * 1000
            drafts, window_count = reconcile(answers), len(answers)
        cost = usage.cost_usd(self.input_usd_per_mtok, self.output_usd_per_mtok)
        encounters, conflict = review.finish([d.encounter() for d in drafts], doc.pages)
        discovery = Discovery(
            encounters=encounters,
            identity_conflict=conflict,
            provider=self.name,
            model=self.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=round(cost, 6),
        )
        try:
            # The document's own pages decide the count; the stage builds the stored manifest again.
            Manifest.build(uuid.UUID(int=0), max(doc.page_count, 1), discovery)
        except ValidationError as exc:
            raise ModelAnswerInvalidError("the reconciled encounters do not make a valid manifest") from exc
        logger.info(
            "encounters discovered by the model",
            extra={
                "pages": len(doc.numbers),
                "window_mode": self.window_mode,
                "windows": window_count,
                "calls": usage.calls,
                "encounters": len(discovery.encounters),
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": discovery.cost_usd,
                "windows_ms": round(read_ms, 1),
                # from the last answer to the discovery: placing the windows, review, the manifest check
                "reconcile_ms": round((time.perf_counter() - started) * 1000 - read_ms, 1),
            },
        )
        return discovery

    # --- one window -----------------------------------------------------------------------

    def _ask(
        self, reading: _Reading, window: list[int], carried: Draft | None = None, context: Sequence[int] | None = None
    ) -> Answered:
        doc = reading.doc
        if context is None:
            messages = window_messages(window, doc, carried, self.max_page_chars)
            can_continue = carried is not None
        else:
            messages = context_window_messages(window, doc, context, self.max_page_chars)
            can_continue = bool(context)
        for ask in range(1, MAX_ASKS + 1):
            try:
                answer = self._call(reading, messages, window, ask)
                drafts, repairs, continuing = check(answer, window, doc, can_continue)
            except BadAnswer as exc:
                logger.warning(
                    "model answer unusable",
                    extra={"first_page": window[0], "last_page": window[-1], "ask": ask},
                )
                if ask == MAX_ASKS:
                    raise ModelAnswerInvalidError(
                        f"the model's answer for pages {window[0]}-{window[-1]} was unusable twice"
                    ) from exc
                messages = reask_messages(messages, exc)
                continue
            logger.info(
                "window answered",
                extra={
                    "first_page": window[0],
                    "last_page": window[-1],
                    "context_pages": len(context or ()),
                    "ask": ask,
                    "encounters": len(drafts),
                    "continues": continuing is not None,
                    "repaired_pages": repairs,
                },
            )
            tagged = [("continues" if i == continuing else "new", d) for i, d in enumerate(drafts)]
            return tagged, answer.open_encounter_continues
        raise AssertionError("unreachable")

    def _call(self, reading: _Reading, messages: list[dict[str, str]], window: list[int], ask: int) -> WindowAnswer:
        """The window cache's answer to exactly these messages, else the model's (then cached)."""
        cache = reading.cache
        key = hashlib.sha256(json.dumps([self.model, messages]).encode()).hexdigest() if cache is not None else ""
        saved = cache.get(key) if cache is not None else None
        if saved is not None:
            # Paid for by an earlier delivery: counted in this discovery's tokens, not asked again.
            reading.usage.count(saved["input_tokens"], saved["output_tokens"])
            logger.info("window answer reused", extra={"first_page": window[0], "last_page": window[-1], "ask": ask})
            return WindowAnswer.model_validate(saved["answer"])
        call = Usage()  # this call's tokens: the shared count moves under other windows meanwhile
        try:
            answer = complete(
                self._client, self.model, messages, window=window, usage=call, ask=ask,
                max_attempts=self.max_attempts, max_wait_s=self.max_wait_s, sleep=self._sleep,
                throttle=reading.throttle,
            )
        finally:
            reading.usage.count(call.input_tokens, call.output_tokens, calls=call.calls)
        if cache is not None:
            cache.put(key, answer.model_dump(mode="json"), call.input_tokens, call.output_tokens)
        return answer


@dataclasses.dataclass
class _Reading:
    """One discover() call: the document, its token count, its window cache, its shared throttle."""

    doc: Document
    usage: Usage
    cache: Any
    throttle: Throttle
