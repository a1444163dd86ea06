"""``OpenAiEncounters``: Pass 0.5 through an OpenAI-compatible chat model with structured output.

The document is read in windows of ``pages_per_window`` pages, every window at once (at most
``max_concurrency`` in flight; ``window_mode="sequential"`` reads them one after another, for
comparison). Each request carries the window's page texts and what came before it: the readable
page(s) just before the window as context, not to be assigned (concurrent), or a summary of the
last encounter found so far (sequential, the hand-off). The answer is bound to
``WindowAnswer``'s JSON schema (``response_format``, strict). The model says, per window, which
encounters it sees with absolute page numbers, whether the first of them continues the
encounter before the window, and whether the last one runs on past the window. Once every
window has answered, continuations are merged here in page order (never in the order the
answers came back), so a hospital stay that crosses window boundaries comes back as one
encounter, not two or three. A throttle (429 with Retry-After) on one window holds every window
of the document until it has passed.

Side by side in one invocation (threads), not a message per window through the queue: a call
is a wait on the network, so a thread per window in flight costs next to nothing (a 1,000-page
file at 10 s a call: 77 s and under 250 MB of the discover function's 600 s and 512 MB), and
each answer is kept in ``discovery_windows`` as it arrives, so an invocation cut short loses
only the windows in flight. A fan-out would add, per window, a queue round trip and perhaps a
cold start, then a fan-in and a reconcile invocation, and would spend the discover function's
concurrency (sized in files) on windows.

The answer is then checked against the document, never trusted:

- page numbers must be the window's own (a window answered with 1..N instead of 41..60, or an
  unparseable answer, is asked once more with the reason, then is a ``ModelAnswerInvalidError``);
  pages claimed twice stay with the first encounter, readable pages the model skipped join the
  encounter on the page before them, blank pages belong to no encounter;
- a date is kept only when its evidence quote is found on a page of the window and shows the
  date's year (or its page does): dates the document does not give are never invented;
- evidence quotes become ``Evidence`` spans (page, character offsets) by locating them in the
  page text; a quote that is not there is dropped;
- the patient's name and identifier are kept only where they are printed on the encounter's
  pages, the birth date only with a quote showing its year (``review.finish`` then adds the
  reasons the pages give: no date, low OCR confidence, and ``conflicting_identity`` on every
  encounter of a file whose encounters show more than one patient, which sets the
  ``identity_conflict`` of the ``Discovery``);
- the result must build a valid ``Manifest`` (every page once, ranges inside the document).

Tokens (every call, re-asks and malformed answers included) and their cost go into the
``Discovery``. Logs carry window page numbers, attempts, token counts, durations and request
ids; never prompts, answers or page text.

The modules, each owning one part:

- ``schema``: ``WindowAnswer``, the JSON schema the model answers in; ``BadAnswer``, ``TooLong``;
- ``prompt``: the system prompt, the window's message, the re-ask;
- ``windows``: the windows (side by side, or in order with the hand-off), their context,
  reconciling them in page order, checking one answer;
- ``grounding``: quotes, dates and patient fields kept only where the page text shows them;
- ``transport``: the SDK client, retries and the Retry-After the windows share, error
  translation, token usage;
- ``provider``: ``OpenAiEncounters``, which puts them together (and the window cache).
"""

from shared.encounters.openai.provider import OpenAiEncounters

__all__ = ["OpenAiEncounters"]
