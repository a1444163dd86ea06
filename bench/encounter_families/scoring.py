"""Scoring Pass 0.5 against a packet's truth, the same for every family.

Per packet (micro-averaged over a family's packets):

- boundary precision, recall and F1: over the readable pages in order, a boundary sits between
  two consecutive pages of different documents; predicted boundaries against true ones
  (over-splitting costs precision as missing costs recall);
- purity: of the pages in predicted encounters, the share that belong to their encounter's
  majority document; none pages: blank and fax cover pages left out of every encounter;
- type and date accuracy of each true document's matched encounter (matched one to one by
  page overlap); dates invented: a predicted date that is no document's encounter date;
- identity accuracy (name, birth date, identifier of the matched document's banner), identity
  conflict recall on packets mixing patients and false alarms on the others (None without
  packets of that kind);
- review AUROC: confidence against correctness (an encounter is correct when it has exactly
  its document's pages, type and dates).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

Packet = Any  # common.Packet, or _clinical's (the same fields)


@dataclasses.dataclass
class Scores:
    boundaries_true: int = 0
    boundaries_pred: int = 0
    boundaries_hit: int = 0
    assigned: int = 0  # readable pages in a predicted encounter
    assigned_pure: int = 0  # ... of its majority document
    none_pages: int = 0  # blank and cover pages
    none_right: int = 0
    docs: int = 0
    types_right: int = 0
    dates_right: int = 0
    dates_invented: int = 0
    identity_fields: int = 0
    identity_right: int = 0
    mixed: int = 0
    mixed_flagged: int = 0
    clean: int = 0
    clean_flagged: int = 0
    ranked: list = dataclasses.field(default_factory=list)  # (confidence, correct, needs_review)

    def add(self, other: Scores) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def metrics(self) -> dict:
        p = self.boundaries_hit / self.boundaries_pred if self.boundaries_pred else 1.0
        r = self.boundaries_hit / self.boundaries_true if self.boundaries_true else 1.0
        wrong = [x for x in self.ranked if not x[1]]
        return {
            "boundary_f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "boundary_precision": round(p, 4),
            "boundary_recall": round(r, 4),
            "purity": _ratio(self.assigned_pure, self.assigned),
            "none_pages_right": _ratio(self.none_right, self.none_pages),
            "type_accuracy": _ratio(self.types_right, self.docs),
            "date_accuracy": _ratio(self.dates_right, self.docs),
            "dates_invented": self.dates_invented,
            "identity_accuracy": _ratio(self.identity_right, self.identity_fields),
            "conflict_recall": _ratio(self.mixed_flagged, self.mixed) if self.mixed else None,
            "conflict_false_alarms": _ratio(self.clean_flagged, self.clean) if self.clean else None,
            "review_auroc": auroc(self.ranked),
            "encounters_wrong": len(wrong),
            "wrong_flagged": _ratio(sum(x[2] for x in wrong), len(wrong)),
            "right_flagged": _ratio(sum(x[2] for x in self.ranked if x[1]), len(self.ranked) - len(wrong)),
        }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 4) if b else 1.0


def auroc(ranked: list) -> float | None:
    """P(a correct encounter's confidence > a wrong one's), ties half; None without both kinds."""
    right = [c for c, ok, _ in ranked if ok]
    wrong = [c for c, ok, _ in ranked if not ok]
    if not right or not wrong:
        return None
    wins = sum((r > w) + 0.5 * (r == w) for r in right for w in wrong)
    return round(wins / (len(right) * len(wrong)), 4)


def _norm(value: str | None) -> str:
    return re.sub(r"[^a-z0-9]", "", (value or "").lower())


def match_encounters(truth: Sequence, pred: Sequence) -> dict:
    """Each true document -> the predicted encounter sharing most of its pages, one to one
    (greedy by overlap, ties by key): the pairing both benches score against."""
    overlap: dict[tuple, int] = {}
    for t, q in zip(truth, pred, strict=True):
        if t is not None and q is not None:
            overlap[(t, q)] = overlap.get((t, q), 0) + 1
    match: dict = {}
    taken: set = set()
    for (t, q), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1])):
        if t not in match and q not in taken:
            match[t] = q
            taken.add(q)
    return match


def count_boundaries(truth: Sequence, pred: Sequence, counts) -> None:
    """Add the true, predicted and found document boundaries between readable pages to
    ``counts`` (its boundaries_true / _pred / _hit)."""
    readable = [i for i, t in enumerate(truth) if t is not None]
    for a, b in zip(readable, readable[1:]):
        true_cut, pred_cut = truth[a] != truth[b], pred[a] != pred[b]
        counts.boundaries_true += true_cut
        counts.boundaries_pred += pred_cut
        counts.boundaries_hit += true_cut and pred_cut


def score(packet: Packet, discovery, manifest) -> Scores:
    s = Scores()
    n = len(packet.pages)
    pred = [manifest.page_assignments[p] for p in range(1, n + 1)]
    truth = packet.truth
    match = match_encounters(truth, pred)
    count_boundaries(truth, pred, s)
    for index, enc in enumerate(discovery.encounters):
        keys = [truth[p - 1] for p in enc.pages()]
        s.assigned += len(keys)
        s.assigned_pure += max((keys.count(k) for k in set(keys) if k is not None), default=0)
    for t, q in zip(truth, pred):
        if t is None:
            s.none_pages += 1
            s.none_right += q is None
    true_dates = {d for doc in packet.docs.values() for d in (doc.start, doc.end) if d}
    for enc in discovery.encounters:
        s.dates_invented += sum(d is not None and d not in true_dates for d in (enc.date_start, enc.date_end))
    pages_of = {k: {i + 1 for i, t in enumerate(truth) if t == k} for k in packet.docs}
    correct: dict[int, bool] = {}
    for key, doc in packet.docs.items():
        s.docs += 1
        q = match.get(key)
        enc = discovery.encounters[q] if q is not None else None
        if enc is None:
            continue
        type_ok = enc.encounter_type == doc.kind
        end_ok = enc.date_end == doc.end if doc.end and doc.end != doc.start else enc.date_end in (None, doc.start)
        date_ok = enc.date_start == doc.start and end_ok
        s.types_right += type_ok
        s.dates_right += date_ok
        correct[q] = type_ok and date_ok and enc.pages() == pages_of[key]
        who = packet.patients[key]
        for field, value in (("patient_name", who.name), ("patient_dob", who.dob), ("patient_identifier", who.mrn)):
            s.identity_fields += 1
            got = getattr(enc, field, None)
            s.identity_right += (got == value) if field == "patient_dob" else (_norm(got) == _norm(value))
    for index, enc in enumerate(discovery.encounters):
        s.ranked.append((enc.confidence, correct.get(index, False), bool(getattr(enc, "needs_review", False))))
    flagged = bool(getattr(manifest, "identity_conflict", False))
    if packet.mixed:
        s.mixed += 1
        s.mixed_flagged += flagged
    else:
        s.clean += 1
        s.clean_flagged += flagged
    return s


def invented(packet: Packet, discovery) -> list[str]:
    """Each invented date and the line it was read from (for --explain: development
    families only, never a left-out one)."""
    true_dates = {d for doc in packet.docs.values() for d in (doc.start, doc.end) if d}
    out = []
    for enc in discovery.encounters:
        for field in ("date_start", "date_end"):
            value = getattr(enc, field)
            if value is None or value in true_dates:
                continue
            where = next((e for e in enc.evidence if e.field == field), None)
            line = "?"
            if where is not None:
                text = packet.pages[where.page_number - 1].text
                a = text.rfind("\n", 0, where.start) + 1
                b = text.find("\n", where.end)
                line = text[a : b if b >= 0 else len(text)]
            out.append(f"{packet.name} p{where.page_number if where else '?'} {field}={value}: {line!r}")
    return out
