"""Shared plumbing of the runtime benches: a local stack, generated documents, RSS sampling,
results written as JSON + PNG under bench/results/. Not a test helper: benches print figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"

LINES = [
    "Clinic Visit Note - Riverside Medical Centre",
    "Patient reviewed for hypertension follow-up. Blood pressure 138/86.",
    "Medications: amlodipine 5 mg daily, atorvastatin 20 mg nightly.",
    "Plan: repeat renal function and lipids in three months.",
    "Clinician: Dr Priya Raman. Date of visit: 05/03/2024.",
]


def start_stack(data_dir: Path | None = None):
    """A local stack (moto SQS+S3, embedded Postgres, local storage) with env exported."""
    from shared.runtime.localstack import LocalStack

    stack = LocalStack(data_dir or Path(tempfile.mkdtemp(prefix="docpipe-bench-")), storage="local").start()
    os.environ.update(stack.env())
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    from shared.settings import get_settings

    get_settings.cache_clear()
    return stack


def stack_deps(prefix: str):
    from shared.bootstrap import build_deps
    from shared.settings import Settings, get_settings
    from shared.submit import provision

    settings = Settings(**{**get_settings().model_dump(), "queue_prefix": prefix})
    deps = build_deps(settings)
    provision(deps)
    return deps


# PyMuPDF and Pillow are imported where used: worker children import the bench's main module
# (multiprocessing does), and must not pay for libraries they do not use.


def text_pdf(path: Path, pages: int, seed: int = 0, letterhead: bool = False) -> Path:
    """A text PDF: black text, or with ``letterhead`` a clinic's colour header on every page
    (a teal band, a red logo mark and white lettering), which makes each page render in RGB."""
    import pymupdf

    doc = pymupdf.open()
    for n in range(pages):
        page = doc.new_page()
        if letterhead:
            page.draw_rect(pymupdf.Rect(0, 0, page.rect.width, 48), color=None, fill=(0.0, 0.45, 0.5))
            page.draw_circle((32, 24), 14, color=None, fill=(0.85, 0.1, 0.15))
            page.insert_text((56, 30), "Riverside Medical Centre", fontsize=16, color=(1, 1, 1))
        y = 72
        for line in LINES:
            page.insert_text((72, y), f"{line} ({seed}.{n + 1})", fontsize=11)
            y += 18
    doc.save(path)
    doc.close()
    return path


def _page_image(seed: int, n: int, size=(1700, 2200)):
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 34)
    except OSError:
        font = ImageFont.load_default(size=34)
    y = 150
    for line in LINES * 3:
        draw.text((140, y), f"{line} [{seed}-{n}]", fill=0, font=font)
        y += 60
    # A little texture so every page's JPEG is a real, distinct scan-like image.
    for k in range(0, size[0], 97):
        draw.point((k, (k * 31 + seed * 7 + n * 13) % size[1]), fill=80)
    return img


def scanned_pdf(path: Path, pages: int, seed: int = 0, size=(1700, 2200)) -> Path:
    """An image-only PDF: each page one distinct grayscale JPEG at 200 DPI, no text layer."""
    import io

    import pymupdf

    doc = pymupdf.open()
    for n in range(pages):
        buf = io.BytesIO()
        _page_image(seed, n, size).save(buf, "JPEG", quality=75)
        page = doc.new_page(width=size[0] * 72 / 200, height=size[1] * 72 / 200)
        page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(path)
    doc.close()
    return path


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def maps_mention(pid: int, needle: str) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/maps").read_text().lower()
    except OSError:
        return False


class Sampler(threading.Thread):
    """Samples a process's RSS and a progress counter every ``every`` seconds."""

    def __init__(self, pid: int, progress, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.progress, self.every = pid, progress, every
        self.samples: list[tuple[float, int, int]] = []  # (t, rss_kb, messages done)
        self.mupdf_seen = False
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = rss_kb(self.pid)
            if rss:
                self.samples.append((time.monotonic() - self.t0, rss, self.progress()))
                self.mupdf_seen |= maps_mention(self.pid, "mupdf")
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def docpipe(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def write_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def new_prefix(tag: str) -> str:
    return f"b{tag}{uuid.uuid4().hex[:6]}"
