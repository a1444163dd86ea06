"""No patient data in logs, metrics or error messages: a canary patient name and date are
planted in documents (their text, their pixels and their file names) that go through every
stage, and in documents that fail; the worker runs with DEBUG logs and metrics on."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymupdf
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import needs_tesseract

REPO = Path(__file__).resolve().parents[2]
NAME = "Philippa Quartermaine"
DATE = "17/09/1961"


def _documents(dest: Path) -> list[Path]:
    stem = f"{NAME} {DATE.replace('/', '-')}"
    text = dest / f"{stem} visit.pdf"
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 90), "Clinic Visit Note", fontsize=16)
    page.insert_text((72, 120), f"Patient: {NAME}   Date of birth: {DATE}", fontsize=11)
    page.insert_text((72, 140), "Seen on 02/03/2024 by Dr Priya Raman, Riverside Medical Centre.", fontsize=11)
    doc.save(text)

    scan = dest / f"{stem} scan.png"
    img = Image.new("L", (1700, 1100), 255)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 44)
    except OSError:
        font = ImageFont.load_default(size=44)
    for n, line in enumerate(["Pathology Report", f"Patient: {NAME}", f"DOB: {DATE}", "Collected 04/03/2024"]):
        draw.text((120, 120 + 90 * n), line, fill=0, font=font)
    img.save(scan)

    locked = dest / f"{stem} locked.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 90), f"Patient: {NAME} {DATE}")
    doc.save(locked, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="secret", owner_pw="owner")

    truncated = dest / f"{stem} truncated.pdf"
    truncated.write_bytes(text.read_bytes()[:60])
    notes = dest / f"{stem}.txt"
    notes.write_text(f"{NAME} {DATE}")
    return [text, scan, locked, truncated, notes]


@needs_tesseract()
def test_the_canary_never_reaches_logs_metrics_or_error_messages(local_stack, tmp_path):
    env = {**os.environ, **local_stack.env(), "QUEUE_PREFIX": f"can{uuid.uuid4().hex[:8]}",
           "STORAGE_BUCKET": "docpipe-canary", "POWERTOOLS_LOG_LEVEL": "DEBUG", "POWERTOOLS_METRICS_NAMESPACE": "docpipe"}
    from shared.bootstrap import build_deps
    from shared.settings import Settings
    from shared.submit import provision, submit

    settings = Settings(**{k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields})
    deps = build_deps(settings)
    provision(deps)
    ids = [submit(deps, path, uuid.uuid4()) for path in _documents(tmp_path)]
    worker = subprocess.run([sys.executable, "-m", "shared.cli", "worker", "--burst", "--concurrency", "2"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stderr[-2000:]

    rows = [deps.db.get_shell_file(i) for i in ids]
    assert [r.status.value for r in rows] == ["completed", "completed", "failed", "failed", "failed"]
    texts = " ".join(t.text for i in ids[:2] for t in deps.db.page_texts(i))
    assert NAME.split()[1] in texts and DATE in texts  # the canary did go through OCR and the text layer
    output = worker.stdout + worker.stderr
    assert '"message"' in output and "shell_file_id" in output  # DEBUG logs were captured
    assert '"_aws"' in output and "CloudWatchMetrics" in output  # and EMF metrics
    errors = " ".join(r.error_message or "" for r in rows)
    for secret in (NAME, *NAME.split(), DATE, DATE.replace("/", "-")):
        assert secret not in output, secret
        assert secret not in errors, secret
    deps.db.close()
