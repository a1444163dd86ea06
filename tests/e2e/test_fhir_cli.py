"""`docpipe process --fhir DIR` and `docpipe fhir SHELL_FILE_ID` as a user runs them: every Bundle
made from the generated samples and from ../shared/corpus/realfmt's PDFs (when present) is
valid R4 for the model library and for HL7's R4 JSON Schema, and `docpipe fhir` gives the
Bundle `process --fhir` wrote (but for the moment it was recorded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_DIR, needs_tesseract
from tests.e2e.test_cli import GOOD, docpipe, lines
from tests.fhir_tools import model_errors, require_tools, schema_errors

REALFMT = SHARED_DIR / "corpus" / "realfmt" / "pdfs"


def without_recorded(bundle: dict) -> dict:
    for entry in bundle["entry"]:
        entry["resource"].pop("recorded", None)
    return bundle


@pytest.mark.slow  # 25 documents through `docpipe process`, as test_corpus runs the corpus
@needs_tesseract()
def test_process_writes_a_valid_bundle_per_file_and_docpipe_fhir_gives_it_again(samples_dir, tmp_path):
    require_tools()
    realfmt = sorted(REALFMT.glob("*.pdf")) if REALFMT.is_dir() else []
    inputs = [samples_dir / n for n in GOOD] + realfmt
    out = tmp_path / "fhir"
    data = tmp_path / "data"
    result = docpipe("process", "--json", "--data-dir", data, "--fhir", out, *inputs, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = lines(result)
    assert [r["status"] for r in reports] == ["completed"] * len(inputs)

    written = sorted(out.glob("*.json"))
    assert len(written) == len(inputs)
    invalid = {}
    for path in written:
        bundle = json.loads(path.read_text())
        problems = model_errors(bundle) + schema_errors(bundle)
        if problems:
            invalid[path.name] = problems[:3]
    assert invalid == {}
    encounters = sum(
        e["resource"]["resourceType"] == "Encounter" for p in written for e in json.loads(p.read_text())["entry"]
    )
    assert encounters >= len(inputs)
    assert f"{len(inputs)} FHIR Bundle(s) in {out}" in result.stderr

    # the same file's Bundle, again, from the database
    report = reports[0]
    stored = out / f"{Path(report['file']).name}.fhir.json"
    again = tmp_path / "again.json"
    fhir = docpipe("fhir", report["shell_file_id"], "--data-dir", data, "--out", again)
    assert fhir.returncode == 0, fhir.stderr
    assert without_recorded(json.loads(again.read_text())) == without_recorded(json.loads(stored.read_text()))
    # and on stdout without --out
    printed = docpipe("fhir", report["shell_file_id"], "--data-dir", data)
    assert printed.returncode == 0 and json.loads(printed.stdout)["type"] == "transaction"


def test_docpipe_fhir_says_what_is_wrong(samples_dir, tmp_path):
    data = tmp_path / "data"
    result = docpipe("process", "--json", "--data-dir", data, samples_dir / "empty.pdf")
    failed = lines(result)[0]
    assert failed["status"] == "failed"
    not_done = docpipe("fhir", failed["shell_file_id"], "--data-dir", data)
    assert not_done.returncode == 1 and "failed" in not_done.stderr and not_done.stdout == ""
    unknown = docpipe("fhir", "00000000-0000-4000-8000-000000000000", "--data-dir", data)
    assert unknown.returncode == 1 and "no such file" in unknown.stderr
    usage = docpipe("fhir", "not-a-uuid")
    assert usage.returncode == 2
