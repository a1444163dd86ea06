"""One process serving records through the stages' ``lambda_handler``s, as a warm Lambda does.

Run by tests/integration/test_lambda.py in a subprocess of its own (so its RSS and its output
are its own), against the local stack the environment names (DATABASE_URL, AWS_ENDPOINT_URL,
QUEUE_PREFIX, STORAGE_BUCKET; provisioned already). By hand, after `docpipe local up`:

    python -m tests.integration.warm_lambda --records 200            # RSS after 10 and after 200
    python -m tests.integration.warm_lambda --records 30 --canary "Zebediah Canarywood"

Documents are generated small: one-page text PDFs (native text) and one-page image PDFs that
need OCR, read by a fake OCR engine (what is measured is docpipe's process, not Tesseract).
The last line on stdout is a JSON report of figures only.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pymupdf

from shared.bootstrap import build_deps, install
from shared.models import PageText
from shared.observability import rss_kb
from shared.ports import OcrEngine
from shared.runtime.worker import Worker
from shared.settings import get_settings
from shared.submit import submit

NOTE = """CLINIC VISIT NOTE
Patient: {name}
Date of visit: 2024-03-{day:02d}
Provider: Dr Amelia Stone, Riverside Family Practice
Reason for visit: follow-up of blood pressure. Blood pressure 128/82.
Plan: continue current medication, review in three months."""


def note(name: str, day: int) -> str:
    return NOTE.format(name=name, day=day)


def text_pdf(path: Path, text: str) -> Path:
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_textbox(pymupdf.Rect(50, 60, 545, 800), text, fontsize=11, fontname="helv")
    doc.save(path)
    doc.close()
    return path


def image_pdf(path: Path, text: str) -> Path:
    """A scanned page: the note rendered to pixels, with no text layer left."""
    source = pymupdf.open()
    page = source.new_page(width=595, height=842)
    page.insert_textbox(pymupdf.Rect(50, 60, 545, 800), text, fontsize=11, fontname="helv")
    png = page.get_pixmap(dpi=100, colorspace=pymupdf.csGRAY).tobytes("png")
    source.close()
    doc = pymupdf.open()
    scan = doc.new_page(width=595, height=842)
    scan.insert_image(scan.rect, stream=io.BytesIO(png))
    doc.save(path)
    doc.close()
    return path


class FakeOcr(OcrEngine):
    """Reads every page image as ``text``: what a real engine would return, minus its cost."""

    name = "fake"

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, image: Path, page_number: int) -> PageText:
        assert image.stat().st_size > 0
        return PageText(page_number=page_number, text=self.text, engine=self.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--report-after", type=int, default=10)
    parser.add_argument("--canary", default=None, help="a patient name planted in every document")
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)

    name = args.canary or "Jane Example"
    settings = get_settings()
    deps = build_deps(settings, ocr=FakeOcr(note(name, 9)))
    install(deps)
    worker = Worker(deps, batch_size=args.batch_size, include_dlqs=False)
    samples: dict[str, float] = {}
    files: list[uuid.UUID] = []
    served = [0]

    def on_batch(queue, messages, failed) -> None:
        # A sample once the count passes a mark: RSS as a warm Lambda would carry it into
        # its next invocation.
        before = served[0]
        after = served[0] = before + len(messages)
        for mark in (args.report_after, args.records):
            if before < mark <= after and str(mark) not in samples:
                samples[str(mark)] = round(rss_kb() / 1024, 1)

    worker.on_batch = on_batch
    patient = uuid.uuid4()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="docpipe-warm-") as tmp:
        day = 0
        while worker.handled < args.records:
            # A few documents at a time, alternating text and scanned, the canary's name in
            # the text and in the file names too.
            for _ in range(2):
                day += 1
                stem = f"{name} visit {day}"
                text_path = text_pdf(Path(tmp) / f"{stem}.pdf", note(name, day % 28 + 1))
                scan_path = image_pdf(Path(tmp) / f"{stem} scan.pdf", note(name, day % 28 + 1))
                files.append(submit(deps, text_path, patient))
                files.append(submit(deps, scan_path, patient))
            worker.run(burst=True, max_messages=args.records, idle_sleep_s=0.05)
    elapsed = time.perf_counter() - started

    statuses = [deps.db.get_shell_file(f).status.value for f in files]
    texts = [t.text for f in files for t in deps.db.page_texts(f)]
    report = {
        "records": worker.handled,
        "rss_mb": samples,
        "growth_mb": round(samples[str(args.records)] - samples[str(args.report_after)], 1)
        if str(args.records) in samples and str(args.report_after) in samples
        else None,
        "files": len(files),
        "completed": statuses.count("completed"),
        "seconds": round(elapsed, 1),
        # Whether the planted name really went through the pipeline (a boolean, not the name).
        "canary_in_page_texts": bool(args.canary) and any(args.canary in t for t in texts),
    }
    deps.db.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
