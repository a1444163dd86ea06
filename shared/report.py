"""What `docpipe process` tells the user about each file: a JSON-ready dict and a text line."""

from __future__ import annotations

import shlex
import uuid

from shared.ports import Database
from shared.view import base_url, file_path


def file_report(db: Database, shell_file_id: uuid.UUID, file: str, with_text: bool = False) -> dict:
    row = db.get_shell_file(shell_file_id)
    if row is None:
        raise LookupError("unknown shell_file_id")
    # The report reads each page's figures and text, never its boxes: without them a 142-page
    # scan's report is read in 8 ms, not 120 (12,000 words and lines parsed for nothing).
    texts = {t.page_number: t for t in db.page_texts(shell_file_id, boxes=False)}
    pages = []
    for page in db.pages(shell_file_id):
        text = texts.get(page.page_number)
        entry = {
            "page_number": page.page_number,
            "text_source": page.text_source.value,
            "engine": text.engine if text else None,
            "chars": len(text.text) if text else 0,
            "confidence": round(text.confidence, 3) if text and text.confidence is not None else None,
            "flag": text.flag if text else None,
            "ink_coverage": text.ink_coverage if text else None,
        }
        if with_text:
            entry["text"] = text.text if text else None
        pages.append(entry)
    manifest = db.manifest(shell_file_id) if row.status.value == "completed" else None
    encounters = [
        {
            "encounter_type": e.encounter_type.value,
            "date_start": e.date_start.isoformat() if e.date_start else None,
            "date_end": e.date_end.isoformat() if e.date_end else None,
            "provider": e.provider,
            "facility": e.facility,
            "page_ranges": [list(r) for r in e.page_ranges],
            "confidence": e.confidence,
            "needs_review": e.needs_review,
            "review_reasons": e.review_reasons,
        }
        for e in (manifest.encounters if manifest else [])
    ]
    return {
        "file": file,
        "shell_file_id": str(shell_file_id),
        "status": row.status.value,
        "mime_type": row.mime_type,
        "page_count": row.page_count or 0,
        "pages": pages,
        "encounters": encounters,
        "identity_conflict": bool(manifest and manifest.identity_conflict),  # more than one patient: review it
        # Pages whose reading a person should check (ocr_empty: ink but no text; ocr_low_confidence).
        "pages_for_review": {str(p): flag for p, flag in manifest.pages_for_review.items()} if manifest else {},
        "error_code": row.error_code,
        "error_message": row.error_message,
    }


def summary_line(report: dict) -> str:
    if report["status"] != "completed":
        return f"FAILED     {report['file']}: {report['error_code']} - {report['error_message']}"
    native = sum(1 for p in report["pages"] if p["text_source"] == "native")
    kinds = ", ".join(
        f"{e['encounter_type']} {e['date_start'] or '?'}"
        + (f"..{e['date_end']}" if e["date_end"] and e["date_end"] != e["date_start"] else "")
        + f" p{'/'.join(f'{a}-{b}' if a != b else str(a) for a, b in e['page_ranges'])}"
        for e in report["encounters"]
    )
    flags = [f"{sum(e['needs_review'] for e in report['encounters'])} to review"] if any(
        e["needs_review"] for e in report["encounters"]) else []
    if report["identity_conflict"]:
        flags.insert(0, "IDENTITY CONFLICT: more than one patient")
    confidences = [
        p["confidence"] for p in report["pages"] if p["text_source"] == "ocr" and p["confidence"] is not None
    ]
    ocr_confidence = f", OCR confidence {min(confidences):.2f}-{max(confidences):.2f}" if confidences else ""
    review = report.get("pages_for_review") or {}
    flagged = (
        "; REVIEW " + ", ".join(f"p{page} {flag}" for page, flag in sorted(review.items(), key=lambda kv: int(kv[0])))
        if review
        else ""
    )
    return (
        f"completed  {report['file']}: {_plural(report['page_count'], 'page')} ({native} native, "
        f"{report['page_count'] - native} OCR{ocr_confidence}), {_plural(len(report['encounters']), 'encounter')}: "
        f"{kinds}{flagged}"
        + (f" [{'; '.join(flags)}]" if flags else "")
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def view_lines(reports: list[dict], data_dir) -> list[str]:
    """How to see the files afterwards: `docpipe process` stops its stack when it is done, so
    the review page is `docpipe view` on the same data directory, one URL per file."""
    lines = [f"review pages: run `docpipe view --data-dir {shlex.quote(str(data_dir))}`, then open"]
    lines += [f"  {base_url()}{file_path(r['shell_file_id'])}  {r['file']}" for r in reports]
    return lines
