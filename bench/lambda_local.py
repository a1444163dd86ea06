"""What the Lambda deployment costs per document and per page, measured on the template itself.

`docpipe lambda` runs template.yaml in its production configuration (EncounterProvider=openai,
Textract, the database URL from SSM through PgBouncer in transaction mode) on 20 mixed
documents (text PDFs, scanned PDFs, faxed TIFFs, phone photos as JPEG and HEIC: the generated
samples, four of each). Printed, and written to bench/results/lambda_local.{json,png}:
invocations and cold starts per function, p50/p95 duration, max memory used against
MemorySize, GB-seconds and dollars at Lambda's x86 price per document and per page, and
Textract's list price per OCR'd page beside it.

Local stand-ins: Textract answers with a recorded real response (../shared/fixtures/textract)
or moto's random text; OpenAI is a local OpenAI-compatible server (so model tokens are not
priced here: see the manifest's cost). Durations are this machine's, not Lambda's: Lambda
gives a function CPU in proportion to MemorySize (a full vCPU at 1,769 MB), so the figures for
the 512 MB functions are if anything optimistic there, and preprocess's (2,048 MB) fair.

`--document scan` puts one document through instead, the 142-page scan of bench/throughput.py's
OCR path, and `--before REF` runs that commit's template and code on the same documents first:
wall time and GB-seconds before and after (written to lambda_local_scan.{json,png}).
`--fhir-output storage` runs the template with FhirOutput=storage (the discover function stores
each file's FHIR Bundle beside its pages) and writes lambda_local_fhir-storage.{json,png}: run it
beside the default to compare the discover function's duration and memory with and without.

  python bench/lambda_local.py [--copies 4] [--document samples|scan] [--before REF] [--fhir-output none|storage]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench._stack import RESULTS  # noqa: E402

# Textract DetectDocumentText list price, first million pages a month (us-east-1).
TEXTRACT_USD_PER_PAGE = 1.50 / 1000
SAMPLES = ["two_visits.pdf", "scanned_discharge.pdf", "fax_referral.tiff", "lab_photo.jpg", "phone_letter.heic"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="copies of each of the 5 samples (4: 20 documents)")
    parser.add_argument("--max-concurrency", type=int, default=2, help="cap per mapping (a 2-core machine)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--document", choices=["samples", "scan"], default="samples",
                        help="scan: one document instead, the 142-page scan of bench/throughput.py's OCR path")
    parser.add_argument("--pages", type=int, default=142, help="the scan's pages (--document scan)")
    parser.add_argument("--before", default=None,
                        help="also run the template and code of this commit on the same documents, first")
    parser.add_argument("--fhir-output", choices=["none", "storage"], default="none",
                        help="the template's FhirOutput (storage: the discover function stores FHIR Bundles)")
    args = parser.parse_args()

    import docpipe_samples as samples

    work = Path(tempfile.mkdtemp(prefix="docpipe-bench-lambda-"))
    if args.document == "scan":
        from bench._ocr_path import scanned_document

        paths = [scanned_document(args.pages)]
    else:
        paths = []
        for copy in range(args.copies):
            written = samples.write_samples(work / f"copy{copy}")
            paths += [written[name] if name in written else work / f"copy{copy}" / name for name in SAMPLES]
    results = {}
    if args.before:
        from bench.throughput import _git_tree

        results["before"] = run(paths, _git_tree(args.before) / "template.yaml", work / "before", args)
        results["before"]["commit"] = args.before
    summary = run(paths, REPO / "template.yaml", work / "after", args)
    print_summary(summary)
    if "before" in results:
        b = results["before"]
        print(f"\nbefore ({args.before}): {b['wall_s']} s wall, {b['gb_s']:.2f} GB-s;"
              f" after: {summary['wall_s']} s wall, {summary['gb_s']:.2f} GB-s")
        summary["before"] = b
    name = "lambda_local" if args.document == "samples" else "lambda_local_scan"
    if args.fhir_output != "none":
        name += f"_fhir-{args.fhir_output}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2))
    plot(summary, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / (name + '.json')} and {RESULTS / (name + '.png')}")
    return 0 if summary["completed"] == len(paths) else 1


def run(paths: list[Path], template: Path, work: Path, args) -> dict:
    """The documents through ``template`` (and the code beside it) on `docpipe lambda`."""
    from shared.runtime.lambda_local import LambdaLocal
    from shared.runtime.localstack import LOCAL_CREDENTIALS
    from tests.servers import TEXTRACT_FIXTURES, RecordedTextract, SchemaAnsweringOpenAi

    os.environ.update({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"})
    recorded = TEXTRACT_FIXTURES / "single-page-1.png.textract.json"
    textract = RecordedTextract(recorded) if recorded.is_file() else None
    with SchemaAnsweringOpenAi() as openai_server:
        if textract is not None:
            textract.__enter__()
        local = LambdaLocal(
            work / "stack",
            template,
            {"EncounterProvider": "openai", "PreprocessMaxConcurrency": "2", "OcrMaxConcurrency": "2",
             "DiscoverMaxConcurrency": "2",
             # a template before FhirOutput has no such parameter: named only when asked for
             **({"FhirOutput": args.fhir_output} if args.fhir_output != "none" else {})},
            openai_base_url=openai_server.base_url,
            textract_endpoint_url=textract.url if textract else None,
            logs_dir=work / "logs",
            report=None,
            concurrency_cap=args.max_concurrency,
        )
        t0 = time.monotonic()
        try:
            local.start()
            ids = local.submit(paths, uuid.UUID("00000000-0000-4000-8000-00000000be0c"))
            finished = local.wait(ids, args.timeout)
            wall_s = time.monotonic() - t0
            local.emulator.stop()
            db = local.uploader().db
            statuses = [db.get_shell_file(i).status.value for i in ids]
            pages, ocr_pages = local.page_figures(ids)
            summary = local.emulator.summary(documents=len(ids), pages=pages, ocr_pages=ocr_pages)
        finally:
            local.stop()
            if textract is not None:
                textract.__exit__()

    summary.update(
        {
            "completed": statuses.count("completed"),
            "finished": finished,
            "wall_s": round(wall_s, 1),
            "textract": "recorded response" if textract else "moto (random text)",
            "textract_usd_per_ocr_page": TEXTRACT_USD_PER_PAGE,
            "textract_usd": ocr_pages * TEXTRACT_USD_PER_PAGE,
            "lambda_usd_per_ocr_page": summary["functions"]["OcrFunction"]["usd"] / ocr_pages if ocr_pages else None,
        }
    )
    return summary


def print_summary(s: dict) -> None:
    from shared.runtime.lambda_emulator import format_summary

    print(f"{s['documents']} documents ({s['completed']} completed) in {s['wall_s']} s, "
          f"{s['pages']} pages, {s['ocr_pages']} OCR'd; Textract: {s['textract']}")
    print(format_summary(s))
    print(f"Lambda compute per page: ${s['usd_per_page']:.6f}; per OCR'd page (OCR function): "
          f"${s['lambda_usd_per_ocr_page']:.6f}; Textract list price per OCR'd page: ${s['textract_usd_per_ocr_page']:.4f}")
    total = s["usd"] + s["textract_usd"]
    print(f"per document, Lambda + Textract: ${total / s['documents']:.5f} "
          f"(Lambda {s['usd'] / total:.0%} of it; LLM tokens not included)")


def plot(s: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, f in s["functions"].items() if f["invocations"]]
    short = [n.removesuffix("Function") for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    p50 = [s["functions"][n]["duration_ms_p50"] for n in names]
    p95 = [s["functions"][n]["duration_ms_p95"] for n in names]
    x = range(len(names))
    axes[0].bar([i - 0.2 for i in x], p50, 0.4, label="p50")
    axes[0].bar([i + 0.2 for i in x], p95, 0.4, label="p95")
    axes[0].set_xticks(list(x), short)
    axes[0].set_ylabel("duration, ms")
    axes[0].legend()
    axes[0].set_title("invocation duration")
    used = [s["functions"][n]["max_memory_mb"] for n in names]
    size = [s["functions"][n]["memory_size_mb"] for n in names]
    axes[1].bar(x, size, 0.6, color="#ddd", label="MemorySize")
    axes[1].bar(x, used, 0.6, label="max used")
    axes[1].set_xticks(list(x), short)
    axes[1].set_ylabel("MB")
    axes[1].legend()
    axes[1].set_title("memory")
    per_page = [s["functions"][n]["usd"] / s["pages"] * 1e6 for n in names]
    axes[2].bar(x, per_page, 0.6, label="Lambda compute")
    axes[2].axhline(s["textract_usd_per_ocr_page"] * 1e6, color="C3", ls="--", label="Textract per OCR'd page")
    axes[2].set_xticks(list(x), short)
    axes[2].set_ylabel("micro-dollars per page")
    axes[2].set_yscale("log")
    axes[2].legend()
    axes[2].set_title("cost per page")
    fig.suptitle(f"docpipe on Lambda, locally: {s['documents']} documents, {s['pages']} pages")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
