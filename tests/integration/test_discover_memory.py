"""The discover stage on a long file holds what Pass 0.5 reads (each page's text, layout, flag,
engine and price), never every word's box: a 1,000-page text PDF is ~350,000 words with boxes,
which as Python objects outgrew the discover function's 512 MB (Lambda killed it, out of
memory, at 513 MB: bench/discover_windows.py --parts lambda)."""

from __future__ import annotations

import tracemalloc
import uuid

from shared.models import Box, DiscoverMessage, FileStatus, Line, PageText, ShellFile, Word
from shared.stages import discover
from tests.fakes import OneEncounterPerDocument

PAGES = 150
WORDS = 700  # a dense page of a discharge summary's text layer


def _page(n: int) -> PageText:
    words = [Word(text=f"word{k}", box=Box(x0=0.1, y0=k / WORDS, x1=0.2, y1=min(1.0, (k + 1) / WORDS)),
                  confidence=0.99) for k in range(WORDS)]
    lines = [Line(text=" ".join(w.text for w in words[k : k + 10]), box=Box(x0=0.1, y0=k / WORDS, x1=0.9, y1=k / WORDS))
             for k in range(0, WORDS, 10)]
    return PageText(page_number=n, text=" ".join(w.text for w in words), words=words, lines=lines, engine="native")


def test_discover_does_not_hold_every_word_box_of_a_long_file(stack_deps):
    # Given a file of 150 dense text pages, every word stored with its box
    db = stack_deps.db
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k", status=FileStatus.QUEUED))
    db.begin_preprocess(sfid)
    page = _page(1)
    for n in range(1, PAGES + 1):
        db.upsert_text(sfid, page.model_copy(update={"page_number": n}))
    assert db.finish_preprocess(sfid, PAGES, needs_ocr=False)
    deps = stack_deps.with_parts(encounters=OneEncounterPerDocument())

    # When the discover stage runs
    tracemalloc.start()
    try:
        assert discover.run(DiscoverMessage(shell_file_id=sfid), deps) == PAGES
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Then it never held the 105,000 words (with their boxes and lines, 169 MB of Python objects
    # on main; over 1 GB at 1,000 such pages): what it holds grows with the text, a few MB
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MB"
    assert db.get_shell_file(sfid).status == FileStatus.COMPLETED
