"""Hostile inputs from ../shared/corpus through `docpipe worker` as a user runs it: a small
stratified sample (one short file per category of interest) each ends completed, or failed
with a typed error code, within a bound, and the worker exits 0. The whole corpus is
bench/corpus.py's job; this test skips when the corpus folder is absent."""

from __future__ import annotations

import csv
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shared.submit import submit

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"

# One file per category: the hostile shapes (bombs, broken structure, encryption both ways,
# exotic codecs, zero pages) rather than the easy ones.
PDF_CATEGORIES = ("bomb", "ccitt", "corrupt", "encrypted_ownerpw", "encrypted_userpw", "huge_page", "jbig2",
                  "jpx", "rotated", "structure", "xfa", "zero_pages", "tiny_page")
IMAGE_CATEGORIES = ("heic_corrupt", "jpeg_truncated", "tiff_corrupt", "png_corrupt", "tiff_multipage_g4",
                    "jpeg_cmyk", "avif_exif")
MAX_PAGES = 3  # any longer file fails fast as too_many_pages: a typed end, and a short test
PER_FILE_S = 90.0


def _sample() -> list[tuple[str, Path]]:
    picked = []
    for folder, categories in (("pdfs", PDF_CATEGORIES), ("images", IMAGE_CATEGORIES)):
        with (CORPUS / folder / "manifest.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        for category in categories:
            # The smallest file of the category: few pages, so OCR stays within the bound.
            candidates = sorted((int(r["size"] or 0), r["file"]) for r in rows if r["category"] == category)
            if candidates:
                picked.append((category, CORPUS / folder / candidates[0][1]))
    return picked


@pytest.mark.slow
@pytest.mark.skipif(not (CORPUS / "pdfs" / "manifest.csv").is_file(), reason="no ../shared/corpus here")
def test_corpus_sample_ends_typed_and_the_worker_survives(stack_env, stack_deps, tmp_path):
    sample = _sample()
    assert len(sample) >= 12
    ids = {submit(stack_deps, path, uuid.uuid4()): (category, path.name) for category, path in sample}
    env = {**stack_env, "WORKER_TMP_DIR": str(tmp_path), "WORKER_POLL_WAIT_S": "1", "MAX_PAGES": str(MAX_PAGES),
           "STAGE_TIMEOUT_S": "60", "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_METRICS_DISABLED": "true"}
    worker = subprocess.run(
        [sys.executable, "-m", "shared.cli", "worker", "--burst", "--concurrency", "2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170,
    )
    assert worker.returncode == 0, worker.stderr[-2000:]

    ends = {}
    for sfid, (category, name) in ids.items():
        row = stack_deps.db.query(
            "select status, error_code, extract(epoch from (updated_at - created_at)) as s from shell_files"
            " where id = %s", (sfid,))[0]
        ends[name] = (category, row["status"], row["error_code"], float(row["s"]))
    for name, (category, status, code, seconds) in ends.items():
        assert status in ("completed", "failed"), (name, category, status)  # no hang
        if status == "failed":
            assert code, (name, category)  # typed, never a bare failure
        assert seconds < PER_FILE_S, (name, category, seconds)
    # A user-password PDF cannot be opened without the password: it fails as encrypted.
    assert [e[1:3] for e in ends.values() if e[0] == "encrypted_userpw"] == [("failed", "encrypted")]
    assert list(tmp_path.iterdir()) == []
    for queue in ("preprocess", "ocr", "discover", "preprocess-dlq", "ocr-dlq", "discover-dlq"):
        assert stack_deps.queue.depth(queue) == (0, 0), queue
