"""The review page's HTML, rendered on the server from the dicts ``shared.view.data`` reads.

Everything that came from a document (text, names, file names) goes through ``esc``. Word
boxes are positioned in percent of the page image, so they stay on their words at any
zoom without script; the one script (``static/view.js``) only toggles the boxes and
highlights evidence while the pointer is on a field.
"""

from __future__ import annotations

import html
import itertools
import re

from shared.view import file_path
from shared.view.data import STATUSES, word_offsets


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _token(*parts) -> str:
    """An evidence token (``e0-provider``): one word of safe characters, whatever a field is called."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(str(p) for p in parts))


def _layout(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)} · docpipe</title><link rel=stylesheet href='/static/view.css'>"
        "<script src='/static/view.js' defer></script></head>"
        f"<body><header><a href='/' class=brand>docpipe</a> <span class=muted>review</span></header>{body}</body></html>"
    )


def _ms(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value / 1000:.1f} s" if value >= 1000 else f"{value:.0f} ms"


def _cost(value) -> str:
    return "–" if value is None else f"${value:.4f}"


# --- the files table -----------------------------------------------------------------


def files_page(files: list[dict], counts: dict[str, int], status: str | None, error_code: str | None) -> str:
    total = sum(counts.values())
    tabs = [f"<a href='/' class='tab{' on' if not status else ''}'>all <b>{total}</b></a>"]
    for name in STATUSES:
        if counts.get(name):
            on = " on" if status == name else ""
            tabs.append(f"<a href='/?status={name}' class='tab{on}' data-status={name}>{name} <b>{counts[name]}</b></a>")
    note = f" <span class=muted>error code {esc(error_code)}</span>" if error_code else ""
    rows = []
    for f in files:
        stages = f["stage_ms"]
        err = (
            f"<code>{esc(f['error_code'])}</code> <span class=msg>{esc(f['error_message'])}</span>"
            if f["error_code"] or f["error_message"] else ""
        )
        rows.append(
            f"<tr data-id='{f['id']}' data-status='{esc(f['status'])}'>"
            f"<td class=when>{esc(f['created_at'].strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f"<td><a href='{file_path(f['id'])}'>{esc(f['original_name'] or f['id'])}</a>"
            f"<div class=id>{f['id']}</div></td>"
            f"<td><span class='status s-{esc(f['status'])}'>{esc(f['status'])}</span></td><td>{err}</td>"
            f"<td class=num>{f['page_count'] if f['page_count'] is not None else '–'}</td>"
            f"<td class=num>{f['native_pages']} / {f['ocr_pages']}</td>"
            f"<td class=num>{f['encounters']}</td><td class=num>{_cost(f['cost_usd'])}</td>"
            + "".join(f"<td class=num>{_ms(stages.get(s))}</td>" for s in ("preprocess", "ocr", "discover"))
            + "</tr>"
        )
    table = (
        "<table class=files><thead><tr><th>submitted</th><th>file</th><th>status</th><th>error</th><th>pages</th>"
        "<th>native / OCR</th><th>encounters</th><th>cost</th><th>preprocess</th><th>ocr</th><th>discover</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows else "<p class=muted>No files here yet: <code>docpipe process FILE</code> makes some.</p>"
    )
    return _layout("files", f"<main><nav class=tabs>{''.join(tabs)}{note}</nav>{table}</main>")


# --- one file ------------------------------------------------------------------------


def _confidence_class(conf) -> str:
    if conf is None:
        return "c-native"
    return "c-hi" if conf >= 0.9 else "c-mid" if conf >= 0.7 else "c-lo"


def _fmt_range(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}–{b}"


def _truthy_review(encounter: dict) -> tuple[bool, list[str]]:
    value = encounter.get("needs_review")
    reasons = encounter.get("review_reasons") or encounter.get("needs_review_reasons") or []
    if isinstance(value, list):
        reasons, value = value, bool(value)
    if isinstance(value, dict):
        reasons, value = value.get("reasons") or [], bool(value.get("value", True))
    if isinstance(reasons, str):
        reasons = [reasons]
    return bool(value), [str(r) for r in reasons]


def _identity(identity, token_prefix: str) -> str:
    """An encounter's patient identity, whatever its exact shape: a dict of fields (lists are
    joined), its evidence spans hoverable like the encounter's own."""
    if not identity:
        return ""
    if not isinstance(identity, dict):
        return f"<div class=identity>identity: {esc(identity)}</div>"
    parts = []
    for key, value in identity.items():
        if key == "evidence" or value in (None, "", []):
            continue
        if isinstance(value, list):
            value = ", ".join(
                " ".join(str(v) for v in item.values()) if isinstance(item, dict) else str(item) for item in value
            )
        elif isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        parts.append(
            f"<span class=f data-evref='{_token(token_prefix, 'identity', key)}'><i>{esc(key.replace('_', ' '))}</i> "
            f"{esc(value)}</span>"
        )
    return f"<div class=identity>identity: {' '.join(parts)}</div>" if parts else ""


def _evidence_spans(encounters: list[dict]) -> dict[int, list[tuple[int, int, str]]]:
    """Page number -> (start, end, token) for every evidence span; the token names the field
    that points at it (``e0-provider``, ``e1-identity-name``)."""
    spans: dict[int, list[tuple[int, int, str]]] = {}
    for index, encounter in enumerate(encounters):
        groups = [(f"e{index}", encounter.get("evidence") or [])]
        identity = encounter.get("identity")
        if isinstance(identity, dict):
            groups.append((f"e{index}-identity", identity.get("evidence") or []))
        for prefix, evidence in groups:
            for ev in evidence:
                if not isinstance(ev, dict) or not isinstance(ev.get("page_number"), int):
                    continue
                token = _token(prefix, ev.get("field", "field"))
                spans.setdefault(ev["page_number"], []).append((int(ev.get("start", 0)), int(ev.get("end", 0)), token))
    return spans


def _marked_text(text: str, spans: list[tuple[int, int, str]]) -> str:
    """The page text with each evidence span wrapped, overlapping spans split at every edge."""
    if not spans:
        return esc(text)
    edges = sorted({0, len(text), *(max(0, min(len(text), p)) for s, e, _ in spans for p in (s, e))})
    out = []
    for a, b in itertools.pairwise(edges):
        tokens = " ".join(t for s, e, t in spans if s <= a and b <= e)
        piece = esc(text[a:b])
        out.append(f"<span class=ev data-ev='{tokens}'>{piece}</span>" if tokens else piece)
    return "".join(out)


def _boxes(page: dict, spans: list[tuple[int, int, str]]) -> str:
    offsets = word_offsets(page["text"], page["words"])
    out = []
    for word, at in zip(page["words"], offsets):
        b = word["box"]
        tokens = " ".join(t for s, e, t in spans if at and at[0] < e and s < at[1]) if at else ""
        conf = word.get("confidence")
        title = word["text"] + ("" if conf is None else f" ({conf:.2f})")
        out.append(
            f"<div class='box {_confidence_class(conf)}' data-word='{esc(word['text'])}'"
            + (f" data-ev='{tokens}'" if tokens else "")
            + f" title='{esc(title)}' style='left:{b['x0'] * 100:.3f}%;top:{b['y0'] * 100:.3f}%;"
            f"width:{(b['x1'] - b['x0']) * 100:.3f}%;height:{(b['y1'] - b['y0']) * 100:.3f}%'></div>"
        )
    return "".join(out)


def _flags(flags: dict) -> str:
    chips = []
    for key, value in flags.items():
        if key == "ocr_empty":
            chips.append("<span class='flag warn' data-flag=ocr_empty>no text read, but the image has ink</span>")
        elif isinstance(value, bool):
            chips.append(f"<span class='flag warn' data-flag='{esc(key)}'>{esc(key.replace('_', ' '))}</span>")
        else:
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            chips.append(f"<span class=flag data-flag='{esc(key)}'>{esc(key.replace('_', ' '))}: {esc(shown)}</span>")
    return "".join(chips)


def _strip(page_count: int, encounters: list[dict], shown: range) -> str:
    def href(n: int) -> str:
        return f"#p{n}" if n in shown else f"?start={_window_start(n)}#p{n}"

    cells = "".join(
        f"<a class=cell href='{href(n)}' data-page={n} style='grid-column:{n}'>{n}</a>" for n in range(1, page_count + 1)
    )
    segments = []
    for index, encounter in enumerate(encounters):
        review, _ = _truthy_review(encounter)
        dates = " – ".join(dict.fromkeys(d for d in (encounter.get("date_start"), encounter.get("date_end")) if d))
        who = " · ".join(v for v in (encounter.get("provider"), encounter.get("facility")) if v)
        for first, last in encounter.get("page_ranges") or []:
            if not (1 <= first <= last <= page_count):
                continue
            title = f"{encounter.get('encounter_type')} {dates} {who} pages {_fmt_range(first, last)}"
            segments.append(
                f"<a class='seg k{index % 6}{' review' if review else ''}' href='#enc{index}' data-enc={index}"
                f" data-first={first} data-last={last} title='{esc(title)}'"
                f" style='grid-column:{first} / {last + 1}'>"
                f"<b>{esc(encounter.get('encounter_type'))}</b> {esc(dates)} <span class=muted>{esc(who)}</span></a>"
            )
    return (
        f"<div class=strip style='grid-template-columns:repeat({max(page_count, 1)}, minmax(1.6em, 1fr))'>"
        f"{cells}{''.join(segments)}</div>"
    )


# A long file's page shows this many pages at a time (their images, boxes and text); the
# strip always covers them all and links into the other windows.
PAGE_WINDOW = 40


def _window_start(n: int) -> int:
    return (n - 1) // PAGE_WINDOW * PAGE_WINDOW + 1


def _encounter_card(index: int, e: dict) -> str:
    review, reasons = _truthy_review(e)
    ranges = ", ".join(_fmt_range(a, b) for a, b in e.get("page_ranges") or [])

    def field(name: str, label: str, value) -> str:
        shown = esc(value) if value not in (None, "") else "<span class=muted>–</span>"
        return f"<div class=f data-evref='{_token(f'e{index}', name)}'><i>{label}</i> {shown}</div>"

    known = {"encounter_type", "date_start", "date_end", "provider", "facility"}
    others = sorted({ev.get("field") for ev in e.get("evidence") or [] if isinstance(ev, dict)} - known - {None})
    conf = e.get("confidence")
    return (
        f"<article class='enc k{index % 6}{' review' if review else ''}' id=enc{index} data-enc={index}>"
        f"<h3><span class=f data-evref='{_token(f'e{index}', 'encounter_type')}'>{esc(e.get('encounter_type'))}</span>"
        f" <span class=muted>{esc(e.get('timing') or '')}</span>"
        f" <span class=pages>page{'s' if len(e.get('page_ranges') or []) > 1 or '–' in ranges else ''} {esc(ranges)}</span></h3>"
        + field("date_start", "from", e.get("date_start"))
        + field("date_end", "to", e.get("date_end"))
        + field("provider", "provider", e.get("provider"))
        + field("facility", "facility", e.get("facility"))
        + "".join(field(name, esc(name.replace("_", " ")), "(evidence)") for name in others)
        + (f"<div><i>confidence</i> {conf:.2f}</div>" if isinstance(conf, (int, float)) else "")
        + _identity(e.get("identity"), f"e{index}")
        + (
            "<div class='flag warn' data-flag=needs_review>needs review"
            + (": " + esc("; ".join(reasons)) if reasons else "") + "</div>"
            if review else ""
        )
        + "</article>"
    )


def _window_links(page_count: int, shown: range) -> str:
    if page_count <= PAGE_WINDOW:
        return ""
    links = []
    for first in range(1, page_count + 1, PAGE_WINDOW):
        last = min(page_count, first + PAGE_WINDOW - 1)
        label = f"pages {first}–{last}"
        links.append(f"<b>{label}</b>" if first == shown.start else f"<a href='?start={first}'>{label}</a>")
    return f"<nav class=windows>{' · '.join(links)}</nav>"


def file_page(detail: dict, start: int = 1) -> str:
    f = detail["file"]
    manifest = detail["manifest"] or {}
    encounters = [e for e in manifest.get("encounters") or [] if isinstance(e, dict)]
    page_count = max(f.get("page_count") or 0, len(detail["pages"]))
    spans = _evidence_spans(encounters)
    banners = []
    if f["status"] == "failed":
        banners.append(
            f"<div class='banner bad'>failed: <code>{esc(f['error_code'])}</code> {esc(f['error_message'])}</div>"
        )
    elif f["status"] != "completed":
        banners.append(f"<div class=banner>still {esc(f['status'])}: reload to see more</div>")
    conflict = manifest.get("identity_conflict")
    if conflict:
        detail_text = "" if conflict is True else f": {esc(conflict)}"
        banners.append(f"<div class='banner bad' data-flag=identity_conflict>identity conflict{detail_text}</div>")
    if manifest.get("needs_review") and not isinstance(manifest.get("needs_review"), dict):
        review, reasons = _truthy_review(manifest)
        if review:
            reason_text = (": " + esc("; ".join(reasons))) if reasons else ""
            banners.append(f"<div class='banner warn' data-flag=needs_review>needs review{reason_text}</div>")
    if manifest.get("identity"):
        banners.append(_identity(manifest.get("identity"), "file"))
    costs = detail["costs"]
    cost = (
        f"{esc(costs['provider'])}{' ' + esc(costs['model']) if costs.get('model') else ''}, "
        f"{costs['input_tokens']}+{costs['output_tokens']} tokens, {_cost(costs['cost_usd'])}"
        if costs else "no manifest"
    )
    stage_ms: dict[str, float] = {}
    for run in detail["runs"]:
        stage_ms[run["stage"]] = stage_ms.get(run["stage"], 0.0) + float(run["duration_ms"])
    timings = ", ".join(f"{s} {_ms(ms)}" for s, ms in stage_ms.items()) or "no runs"
    shown = range(_window_start(max(1, start)), _window_start(max(1, start)) + PAGE_WINDOW)
    pages_html = []
    for page in detail["pages"]:
        n = page["page_number"]
        if n not in shown:
            continue
        page_spans = spans.get(n, [])
        conf = page["confidence"]
        meta = f"{esc(page['engine'] or page['text_source'])}" + ("" if conf is None else f", confidence {conf:.2f}")
        pages_html.append(
            f"<section class=page id=p{n} data-page={n}>"
            f"<h2>page {n} <span class=muted>{meta}, {page['width']}×{page['height']} px, "
            f"{len(page['words'])} words</span>{_flags(page['flags'])}</h2>"
            f"<div class=pair><div class=sheet><img src='{file_path(f['id'])}/pages/{n}.jpg' alt='page {n}'"
            f" width={page['width']} height={page['height']} loading=lazy>"
            f"<div class=boxes>{_boxes(page, page_spans)}</div></div>"
            f"<pre class=text>{_marked_text(page['text'], page_spans)}</pre></div></section>"
        )
    body = (
        f"<main class=file data-id='{f['id']}' data-status='{esc(f['status'])}'>"
        f"<h1>{esc(f.get('original_name') or f['id'])} <span class='status s-{esc(f['status'])}'>{esc(f['status'])}</span></h1>"
        f"<p class=muted>{f['id']} · {esc(f.get('mime_type') or '?')} · {page_count} pages · {esc(cost)} · {timings}</p>"
        f"{''.join(banners)}"
        "<div class=controls><label><input type=checkbox id=show-boxes checked> word boxes</label>"
        " <span class='key c-hi'>conf ≥ 0.9</span><span class='key c-mid'>0.7–0.9</span>"
        "<span class='key c-lo'>&lt; 0.7</span><span class='key c-native'>text layer</span></div>"
        f"{_strip(page_count, encounters, shown) if page_count else ''}"
        f"<div class=encounters>{''.join(_encounter_card(i, e) for i, e in enumerate(encounters))}</div>"
        f"{_window_links(page_count, shown)}"
        f"{''.join(pages_html)}{_window_links(page_count, shown)}</main>"
    )
    return _layout(f.get("original_name") or f["id"], body)
