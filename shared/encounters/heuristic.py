"""The offline encounter provider: documents found from the structure of printed pages.

``HeuristicEncounters`` needs no network and no model, and gives the same manifest for the
same page texts every time. The work is split by what it owns:

- ``text.py``: lines, spans, blank pages;
- ``dates.py``: dates and their roles (birth, printed, faxed, created, signed and
  previous-visit dates are never encounter dates);
- ``cues.py``: titles, page markers, letterheads, salutations, section headings, running
  footers, fax cover sheets, provider and facility;
- ``identity.py``: the patient banner (name, birth date, identifier) and conflicts;
- ``grouping.py``: where an encounter starts, what it is, whether it needs review.

Blank pages and fax cover sheets belong to no encounter (None in the manifest); any other page
is in exactly one. A file whose encounters show more than one patient has
``identity_conflict`` set, and each encounter of it ``needs_review``. Page text never leaves
this package except as the fields it sets and their evidence spans; nothing here logs.
"""

from __future__ import annotations

from shared.encounters import boundaries, grouping, identity
from shared.encounters.boundaries import MODES, BoundaryModel
from shared.encounters.dates import DATE_ORDERS, forget_texts, page_orders
from shared.encounters.text import is_blank
from shared.models import Discovery, PageText
from shared.ports import EncounterProvider


class HeuristicEncounters(EncounterProvider):
    """Finds encounters offline from page structure, titles, patient banners and labelled dates.

    Deterministic: the same pages give the same ``Discovery``. Blank pages and cover sheets
    are left out of every encounter (None in the manifest); any other page is in exactly one.
    """

    name = "heuristic"

    def __init__(self, date_order: str = "auto", model: BoundaryModel | None = None, mode: str = "hybrid") -> None:
        if date_order not in DATE_ORDERS:
            raise ValueError(f"date_order must be one of {', '.join(DATE_ORDERS)}")
        self.date_order = date_order  # how numeric dates read: auto (as the file shows), dmy or mdy
        self.model = model  # the page-pair boundary model (None: the one shipped, boundary_model.json)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.mode = mode  # how rules and model decide together (boundaries.decide); the bench compares them

    def discover(self, pages: list[PageText]) -> Discovery:
        unique: dict[int, PageText] = {}
        for page in sorted(pages, key=lambda p: p.page_number):
            unique.setdefault(page.page_number, page)
        readable = [p for p in unique.values() if not is_blank(p.text) and not grouping.is_cover(p)]
        try:
            orders = page_orders([p.text for p in readable], self.date_order)
            pages = (grouping.read_page(p, order) for p, order in zip(readable, orders, strict=True))
            groups = grouping.group_pages(pages, self.model, self.mode)
        finally:
            forget_texts()  # the lines whose dates were kept while the pages were read
            boundaries.forget_lines()  # and the pairs of lines compared while they were grouped
        people = identity.distinct(g.patient for g in groups)
        conflict = len(people) > 1
        born = frozenset(g.patient.dob[0] for g in groups if g.patient.dob)
        encounters = [grouping.encounter(g, conflict, born) for g in groups]
        return Discovery(encounters=encounters, provider=self.name, model=None, identity_conflict=conflict)
