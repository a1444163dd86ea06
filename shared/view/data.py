"""What the review page reads, as plain dicts: through the ``Database`` port, plus a few
read-only aggregate queries where the port has none (as ``shared.ops`` does).

Fields that Pass 0.5 may add to the manifest (``identity``, ``needs_review``,
``identity_conflict``, per-page flags) are passed through as stored, so the page shows them
once they exist and nothing breaks while they do not.
"""

from __future__ import annotations

import uuid

from shared.models import FileStatus
from shared.ports import Database

STATUSES = tuple(s.value for s in FileStatus)

_FILES_SQL = """
select f.id, f.original_name, f.mime_type, f.page_count, f.status, f.error_code, f.error_message,
       f.created_at, f.updated_at,
       (select count(*) from ocr_text_extractions t where t.shell_file_id = f.id and t.engine = 'native') as native_pages,
       (select count(*) from ocr_text_extractions t where t.shell_file_id = f.id and t.engine <> 'native') as ocr_pages,
       (select count(*) from healthcare_encounters e where e.shell_file_id = f.id) as encounters,
       m.cost_usd,
       (select jsonb_object_agg(s.stage, s.ms) from
          (select r.stage, sum(r.duration_ms) as ms from pipeline_runs r where r.shell_file_id = f.id group by r.stage) s
       ) as stage_ms
  from shell_files f left join shell_file_manifests m on m.shell_file_id = f.id
 where (%(status)s::text is null or f.status = %(status)s)
   and (%(error_code)s::text is null or f.error_code = %(error_code)s)
 order by f.created_at desc, f.id
 limit %(limit)s
"""


def list_files(db: Database, status: str | None = None, error_code: str | None = None, limit: int = 500) -> list[dict]:
    """Newest first; ``status`` / ``error_code`` filter when given."""
    rows = db.query(_FILES_SQL, {"status": status, "error_code": error_code, "limit": limit})
    return [
        {
            **row,
            "id": str(row["id"]),
            "cost_usd": None if row["cost_usd"] is None else float(row["cost_usd"]),
            "stage_ms": row["stage_ms"] or {},
        }
        for row in rows
    ]


def status_counts(db: Database) -> dict[str, int]:
    return {r["status"]: r["n"] for r in db.query("select status, count(*) as n from shell_files group by status")}


def file_detail(db: Database, shell_file_id: uuid.UUID) -> dict | None:
    """Everything one file's page shows; None for an id that is not in the database."""
    row = db.get_shell_file(shell_file_id)
    if row is None:
        return None
    texts = {t.page_number: t for t in db.page_texts(shell_file_id)}
    extras = {
        r["page_number"]: r["extra"] or {}
        for r in db.query(
            "select page_number, to_jsonb(t) - 'text' - 'words' - 'lines' - 'shell_file_id' as extra"
            " from ocr_text_extractions t where shell_file_id = %s",
            (shell_file_id,),
        )
    }
    stored = db.query(
        "select manifest, provider, model, input_tokens, output_tokens, cost_usd"
        " from shell_file_manifests where shell_file_id = %s",
        (shell_file_id,),
    )
    manifest = stored[0]["manifest"] if stored else None
    manifest_pages = _manifest_page_flags(manifest)
    pages = []
    for page in db.pages(shell_file_id):
        text = texts.get(page.page_number)
        flags = {**_page_flags(extras.get(page.page_number, {})), **manifest_pages.get(page.page_number, {})}
        pages.append(
            {
                "page_number": page.page_number,
                "width": page.width,
                "height": page.height,
                "text_source": page.text_source.value,
                "engine": text.engine if text else None,
                "confidence": text.confidence if text else None,
                "text": text.text if text else "",
                "words": [w.model_dump() for w in text.words] if text else [],
                "flags": flags,
            }
        )
    runs = db.query(
        "select stage, attempt, outcome, error_code, started_at, duration_ms, peak_rss_kb from pipeline_runs"
        " where shell_file_id = %s order by started_at, id",
        (shell_file_id,),
    )
    return {
        "file": row.model_dump(mode="json"),
        "pages": pages,
        "manifest": manifest,
        "costs": (
            {k: (float(v) if k == "cost_usd" else v) for k, v in stored[0].items() if k != "manifest"} if stored else None
        ),
        "runs": [{**r, "started_at": r["started_at"].isoformat()} for r in runs],
    }


# Per-page review flags as the text rows or the manifest may carry them; known names only,
# so a column added for another purpose is not shown as a flag by accident.
_PAGE_FLAG_NAMES = ("ocr_empty", "needs_review", "review_reasons", "ink_ratio", "mean_confidence", "low_confidence")


def _page_flags(extra: dict) -> dict:
    return {k: extra[k] for k in _PAGE_FLAG_NAMES if extra.get(k) not in (None, False, [], "")}


def _manifest_page_flags(manifest: dict | None) -> dict[int, dict]:
    """Per-page flags from the manifest: a ``pages`` list of objects with ``page_number``, or a
    ``page_flags`` / ``ocr_empty_pages`` mapping or list."""
    out: dict[int, dict] = {}
    if not isinstance(manifest, dict):
        return out
    for entry in manifest.get("pages") or []:
        if isinstance(entry, dict) and isinstance(entry.get("page_number"), int):
            out.setdefault(entry["page_number"], {}).update(_page_flags(entry))
    flags = manifest.get("page_flags")
    if isinstance(flags, dict):
        for number, value in flags.items():
            if str(number).isdigit() and isinstance(value, dict):
                out.setdefault(int(number), {}).update(_page_flags(value))
    for number in manifest.get("ocr_empty_pages") or []:
        if isinstance(number, int):
            out.setdefault(number, {})["ocr_empty"] = True
    return out


def word_offsets(text: str, words: list[dict]) -> list[tuple[int, int] | None]:
    """Each word's character span in the page text, or None where it cannot be found.

    The stages build a page's text by joining its words in reading order (spaces within a
    line, newlines between lines), so a forward search from the previous word finds each one;
    a word not found nearby is left unplaced rather than matched somewhere far away.
    """
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for word in words:
        token = word.get("text") or ""
        at = text.find(token, cursor, cursor + len(token) + 200) if token else -1
        if at < 0:
            spans.append(None)
            continue
        spans.append((at, at + len(token)))
        cursor = at + len(token)
    return spans
