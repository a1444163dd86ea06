"""bench/_ocr_path.py reports docpipe and the "before" commit on the same footing."""

from __future__ import annotations

from pathlib import Path

from bench import _ocr_path


def test_the_before_columns_come_from_the_befores_best_run_as_docpipes_do(monkeypatch) -> None:
    # Given two rounds in which the "before" commit's best ratio is not its earliest first page
    monkeypatch.setattr(_ocr_path, "scanned_document", lambda pages: Path("scan.pdf"))
    monkeypatch.setattr(_ocr_path, "page_images", lambda document: [Path("p1.jpg"), Path("p2.jpg")])
    monkeypatch.setattr(_ocr_path, "bare", lambda images, concurrency: {
        "wall_s": 10.0, "cpu_s": 10.0, "first_page_s": 0.3, "page_s_mean": 1.0})
    befores = iter([(12.0, 1.5), (11.0, 1.9)])  # (wall, first OCR'd page): the second is the best

    def run(document, concurrency, tree, trace):
        wall, first = next(befores) if tree == Path("before") else (11.5, 1.7)
        return {"wall_s": wall, "cpu_s": wall, "first_ocr_page_s": first, "adapter_ms_mean": 1000.0,
                "ocr_handler_ms_per_page": 1000.0}

    monkeypatch.setattr(_ocr_path, "docpipe", run)
    # When the OCR path is measured
    row = _ocr_path.ocr_path(2, [1], reps=2, before=Path("before"))["by_concurrency"]["1"]
    # Then the before's ratio and first page are those of one run, its best, as docpipe's are
    assert row["before_ratio"] == 1.1 and row["before_first_ocr_page_s"] == 1.9
