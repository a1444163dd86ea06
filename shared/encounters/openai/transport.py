"""One answer from an OpenAI-compatible endpoint: the SDK client, retries, Retry-After, the
translation of SDK errors into docpipe's, and the token count of every call.

The client has ``max_retries=0``; this module owns backoff. A 429 or 5xx waits for the
endpoint's Retry-After (or 1, 2, 4 s) while the wait fits in ``max_wait_s`` and attempts
remain, so windows already paid for are not thrown away by a short throttle; past that it raises
``ThrottledError`` / ``DependencyUnavailableError`` with ``retry_after_s`` set to the hint and
the queue delivers the message again. A Retry-After is shared by every window of the document
through one ``Throttle``: the windows read side by side all wait it out before their next call,
so a throttled account is not asked again by the others meanwhile. An answer cut off by its
length, or a window larger than the model's context, is ``TooLong``; a malformed, refused or
empty answer is ``BadAnswer``.

Tokens are counted for every call, malformed answers included. Logs carry window page numbers,
attempts, token counts, durations and request ids; never prompts or answers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import openai
from pydantic import ValidationError

from shared.encounters.openai.schema import BadAnswer, TooLong, WindowAnswer
from shared.errors import (
    DependencyUnavailableError,
    ModelRequestRejectedError,
    RetryableError,
    ThrottledError,
)
from shared.observability import logger

# The SDK logs whole request bodies (the prompt, i.e. page text) at DEBUG, and OPENAI_LOG=debug
# turns that on: hold its logger at INFO whatever the environment says.
logging.getLogger("openai").setLevel(max(logging.getLogger("openai").level, logging.INFO))


@dataclasses.dataclass
class Usage:
    """Calls and tokens; safe to add to from the threads that read windows side by side."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, usage: Any) -> tuple[int, int]:
        """Count a call's usage (an SDK object or a raw JSON dict; None when the server gave none)."""
        if usage is None:
            inp, out = 0, 0
        elif isinstance(usage, dict):
            inp, out = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        else:
            inp, out = usage.prompt_tokens or 0, usage.completion_tokens or 0
        self.count(int(inp), int(out), calls=1)
        return int(inp), int(out)

    def count(self, input_tokens: int, output_tokens: int, calls: int = 0) -> None:
        with self._lock:
            self.calls += calls
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens

    def cost_usd(self, input_usd_per_mtok: float, output_usd_per_mtok: float) -> float:
        return (self.input_tokens * input_usd_per_mtok + self.output_tokens * output_usd_per_mtok) / 1e6


class Throttle:
    """One Retry-After for all the windows of a document: the latest hint an endpoint gave
    holds every window's next call until it has passed (``hold``; ``pending`` before each call)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._resume_at = 0.0

    def hold(self, seconds: float) -> float:
        """Hold every window for ``seconds`` from now (the latest hint wins); the hold's id."""
        with self._lock:
            self._resume_at = self._clock() + seconds
            return self._resume_at

    def pending(self) -> tuple[float, float]:
        """The current hold's id and the seconds left of it (0 when none)."""
        with self._lock:
            return self._resume_at, max(0.0, self._resume_at - self._clock())


def build_client(api_key: str, base_url: str | None, timeout_s: float) -> openai.OpenAI:
    """The SDK client, with its own retries off (``complete`` does them)."""
    return openai.OpenAI(
        # Local OpenAI-compatible servers often take no key; the SDK insists on one.
        api_key=api_key or "not-needed",
        base_url=base_url,
        timeout=timeout_s,
        max_retries=0,
    )


def complete(
    sdk: openai.OpenAI,
    model: str,
    messages: list[dict[str, str]],
    *,
    window: list[int],
    usage: Usage,
    ask: int,
    max_attempts: int,
    max_wait_s: float,
    sleep: Callable[[float], None],
    throttle: Throttle | None = None,
) -> WindowAnswer:
    """One answer from the model, waiting out short throttles (its own, and through ``throttle``
    the other windows'); ``BadAnswer`` if malformed."""
    extra: dict[str, Any] = {} if _reasoning_model(model) else {"temperature": 0}
    throttle = throttle or Throttle()
    waited = 0.0
    held = 0.0  # the hold this window has already waited out
    for attempt in range(1, max_attempts + 1):
        hold, left = throttle.pending()
        if left > 0 and hold != held:
            if waited + left > max_wait_s:
                # Another window's throttle outlasts what this invocation waits: the message
                # comes back after it, and the windows answered meanwhile are kept.
                raise ThrottledError("the model endpoint is throttling this account", round(left, 3))
            logger.info("window held by a throttle", extra={"first_page": window[0], "wait_s": round(left, 3)})
            sleep(round(left, 3))
            waited += left
            held = hold
        t0 = time.perf_counter()
        try:
            raw = _parse_api(sdk).with_raw_response.parse(
                model=model, messages=messages, response_format=WindowAnswer, **extra
            )
        except openai.OpenAIError as exc:
            error = _transport_error(exc)
            if isinstance(error, TooLong):
                raise error from exc
            wait = error.retry_after_s if isinstance(error, RetryableError) else None
            wait = _backoff_s(attempt) if wait is None else wait
            give_up = not isinstance(error, RetryableError) or attempt == max_attempts
            logger.warning(
                "model call failed",
                extra={
                    "first_page": window[0],
                    "last_page": window[-1],
                    "call_attempt": attempt,
                    "error": type(exc).__name__,
                    "status": getattr(exc, "status_code", None),
                    "retry_after_s": wait if isinstance(error, RetryableError) else None,
                },
            )
            if isinstance(error, RetryableError) and error.retry_after_s is not None:
                held = throttle.hold(wait)  # the endpoint's hint holds every window, this one too
            if give_up or waited + wait > max_wait_s:
                raise error from exc
            sleep(wait)
            waited += wait
            continue
        return _read(raw, window, usage, ask, attempt, (time.perf_counter() - t0) * 1000)
    raise AssertionError("unreachable")


def _parse_api(sdk: openai.OpenAI) -> Any:
    # ``chat.completions.parse`` since openai 1.92; before that it lived under ``beta``.
    chat = sdk.chat.completions
    return chat if hasattr(chat, "parse") else sdk.beta.chat.completions


def _read(raw: Any, window: list[int], usage: Usage, ask: int, attempt: int, ms: float) -> WindowAnswer:
    request_id = raw.headers.get("x-request-id")
    try:
        completion = raw.parse()
    except openai.LengthFinishReasonError as exc:
        completion = getattr(exc, "completion", None)
        usage.add(completion.usage if completion is not None else _raw_usage(raw))
        raise TooLong() from exc
    except openai.ContentFilterFinishReasonError as exc:
        usage.add(_raw_usage(raw))
        raise BadAnswer("the answer was stopped by a content filter") from exc
    except (ValidationError, ValueError) as exc:
        usage.add(_raw_usage(raw))
        raise BadAnswer("the answer did not match the JSON schema") from exc
    inp, out = usage.add(completion.usage)
    logger.info(
        "model answered",
        extra={
            "first_page": window[0],
            "last_page": window[-1],
            "ask": ask,
            "call_attempt": attempt,
            "input_tokens": inp,
            "output_tokens": out,
            "duration_ms": round(ms, 1),
            "request_id": request_id,
        },
    )
    if not completion.choices:
        raise BadAnswer("the answer had no choices")
    message = completion.choices[0].message
    if message.parsed is None:
        raise BadAnswer("the answer was a refusal or empty" if message.refusal else "the answer was empty")
    return message.parsed


def _raw_usage(raw: Any) -> dict | None:
    try:
        body = raw.http_response.json()
    except (ValueError, AttributeError):
        return None
    return body.get("usage") if isinstance(body, dict) else None


def _retry_after(headers: Any) -> float | None:
    """The endpoint's hint in seconds: retry-after-ms, retry-after (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _transport_error(exc: Exception) -> Exception:
    """The docpipe error for an SDK exception (``TooLong`` for a window over the context)."""
    if isinstance(exc, openai.RateLimitError):
        return ThrottledError("the model endpoint throttled the request (429)", _retry_after(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return DependencyUnavailableError("the model call timed out")
    if isinstance(exc, openai.APIConnectionError):
        return DependencyUnavailableError("the model endpoint could not be reached")
    if isinstance(exc, openai.APIStatusError):
        status, hint = exc.status_code, _retry_after(exc.response.headers)
        if status >= 500 or status in (408, 409):
            return DependencyUnavailableError(f"the model endpoint answered {status}", hint)
        if status in (401, 403, 404):
            # Configuration (key, model name, base URL): fixable without touching the document,
            # so the message is kept for redelivery (and the DLQ) rather than failing the file.
            return DependencyUnavailableError(f"the model endpoint refused the configuration ({status})", hint)
        code = getattr(exc, "code", None)
        if status == 400 and code == "context_length_exceeded":
            return TooLong()
        return ModelRequestRejectedError(f"the model endpoint rejected the request ({status})")
    return DependencyUnavailableError(f"the model call failed ({type(exc).__name__})")


def _backoff_s(attempt: int) -> float:
    return float(min(8, 2 ** (attempt - 1)))


def _reasoning_model(model: str) -> bool:
    # o1/o3/o4 and gpt-5 reject a temperature other than the default.
    return bool(re.match(r"^(?:o\d|gpt-5)", model.split("/")[-1]))
