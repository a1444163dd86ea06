"""windows.read_windows_concurrently without a model: answers that come back in any order are
reconciled in page order, a failure stops the windows not yet started, a window too long for
the model is asked as two halves, each with its own context, and the shared throttle."""

from __future__ import annotations

import threading
import time

import pytest

from shared.encounters.openai.schema import TooLong
from shared.encounters.openai.transport import Throttle
from shared.encounters.openai.windows import Document, Draft, read_windows, read_windows_concurrently
from shared.errors import DependencyUnavailableError
from shared.models import EncounterType, PageText, Timing

# Pages 1-9 are one encounter, 10-12 another; pages 5 and 6 are blank.
OWNER = {n: "a" if n < 10 else "b" for n in range(1, 13)}


def _doc() -> Document:
    return Document([PageText(page_number=n, text="" if n in (5, 6) else f"Clinic note page {n} of the visit",
                              engine="native") for n in range(1, 13)])


def _draft(pages: list[int]) -> Draft:
    return Draft(EncounterType.OUTPATIENT, Timing.HAPPENED, set(pages), 0.9 * len(pages), {}, None)


def _answer(window: list[int], doc: Document, continues: bool):
    groups: dict[str, list[int]] = {}
    for n in window:
        if n in doc.readable:
            groups.setdefault(OWNER[n], []).append(n)
    found = [("continues" if i == 0 and continues else "new", _draft(p)) for i, p in enumerate(groups.values())]
    return found, False


def test_answers_in_any_order_are_reconciled_in_page_order():
    doc = _doc()
    seen = []
    answered = threading.Condition()
    last_first = [10, 7, 4, 1]

    def ask(window, context):
        # The last window answers first: each waits for the ones after it (all four are in
        # flight at once), by order, not by how long each sleeps on a busy machine.
        with answered:
            answered.wait_for(lambda: len(seen) == last_first.index(window[0]), timeout=10)
            seen.append((window[0], tuple(context)))
            answered.notify_all()
        continues = bool(context) and OWNER[context[-1]] == OWNER[next(n for n in window if n in doc.readable)]
        return _answer(window, doc, continues)

    drafts, count = read_windows_concurrently(doc, 3, ask, max_concurrency=4)

    assert count == 4 and [s[0] for s in seen] == [10, 7, 4, 1]  # answered last window first
    assert sorted(seen) == [(1, ()), (4, (3,)), (7, (4,)), (10, (9,))]  # page 7's context skips blank 5 and 6
    assert [sorted(d.pages) for d in drafts] == [[1, 2, 3, 4, 7, 8, 9], [10, 11, 12]]
    sequential, _ = read_windows(doc, 3, lambda w, carried: _answer(w, doc, carried is not None and
                                                                     OWNER[max(carried.pages)] == OWNER[w[0]]))
    assert [d.pages for d in sequential] == [d.pages for d in drafts]


def test_a_failure_stops_the_windows_not_yet_started_and_is_raised_after_those_in_flight():
    doc = _doc()
    started, finished = [], []

    def ask(window, context):
        started.append(window[0])
        if window[0] == 1:
            raise DependencyUnavailableError("down")
        time.sleep(0.2)
        finished.append(window[0])
        return _answer(window, doc, False)

    with pytest.raises(DependencyUnavailableError):
        read_windows_concurrently(doc, 1, ask, max_concurrency=2)
    # At most the one its freed thread had already taken started after it; those in flight ended.
    assert len(started) <= 3 and sorted(finished) == sorted(started[1:])


def test_a_window_too_long_is_asked_as_two_halves_each_with_its_context():
    doc = _doc()
    asked = []

    def ask(window, context):
        asked.append((tuple(window), tuple(context)))
        if len(window) > 3:
            raise TooLong()
        return _answer(window, doc, bool(context) and OWNER[context[-1]] == OWNER[window[0]])

    drafts, count = read_windows_concurrently(doc, 6, ask, max_concurrency=2)

    assert sorted(asked) == [((1, 2, 3), ()), ((1, 2, 3, 4, 5, 6), ()), ((4, 5, 6), (3,)),
                             ((7, 8, 9), (4,)), ((7, 8, 9, 10, 11, 12), (4,)), ((10, 11, 12), (9,))]
    assert count == 4 and [sorted(d.pages) for d in drafts] == [[1, 2, 3, 4, 7, 8, 9], [10, 11, 12]]


def test_a_window_that_continues_an_unassigned_context_page_starts_anew():
    doc = _doc()

    def ask(window, context):
        if window[0] == 1:
            return [("new", _draft([1, 2]))], False  # page 3 unassigned (a cover sheet)
        role = "continues" if window[0] in (4, 7) else "new"
        return [(role, _draft([n for n in window if n in doc.readable]))], False

    drafts, _ = read_windows_concurrently(doc, 3, ask, max_concurrency=2)
    # page 4 says it continues what page 3 shows, which no encounter holds: a new encounter, not
    # joined across page 3 to pages 1-2; page 7 continues page 4 (blank 5 and 6 between)
    assert [sorted(d.pages) for d in drafts] == [[1, 2], [4, 7, 8, 9], [10, 11, 12]]


def test_the_latest_retry_after_holds_every_window():
    now = [100.0]
    throttle = Throttle(clock=lambda: now[0])
    assert throttle.pending()[1] == 0
    first = throttle.hold(5.0)
    now[0] += 1
    assert throttle.pending() == (first, 4.0)
    second = throttle.hold(2.0)  # a later, shorter hint wins: the endpoint's freshest word
    assert second != first and throttle.pending() == (second, 2.0)
    now[0] += 3
    assert throttle.pending()[1] == 0
