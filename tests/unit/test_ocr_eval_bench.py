"""bench/ocr_eval.py skips what is absent beside the checkout and still reports the rest."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

needs = pytest.mark.skipif(
    shutil.which("tesseract") is None or not all(importlib.util.find_spec(m) for m in ("matplotlib", "rapidfuzz")),
    reason="needs tesseract and the bench's extra dependencies",
)


@needs
def test_without_the_team_data_the_bench_reports_its_own_pages(tmp_path: Path) -> None:
    from bench import ocr_eval

    # Given no ../shared (no corpus, no degraded pages, no real scans, no Textract fixtures)
    empty = tmp_path / "shared"
    empty.mkdir()
    # When the bench runs
    code = ocr_eval.main(["--shared", str(empty), "--out", str(tmp_path / "out"), "--omp-sample", "0"])
    # Then it reads the pages it writes itself, and reports them
    assert code == 0
    report = json.loads((tmp_path / "out" / "ocr_eval.json").read_text())
    sets = {row["set"]: row for row in report["sets"]}
    assert sets["rendered clean pages"]["pages"] > 0 and sets["rendered clean pages"]["cer"] < 0.02
