"""What amazon-textract-textractor costs an OCR child: RSS with it against the hand parser it replaced.

    python bench/textract_rss.py [--runs 5] [--response ../shared/fixtures/textract/form.png.textract.json]
                                 [--out bench/results]

Each run is a fresh ``python`` process (as the worker's child and a cold Lambda are) that does
what the OCR stage does before and after Textract answers: imports the Textract adapter, builds
its boto3 client (no request is sent), then parses one recorded Textract response into page
text. Two variants:

- ``textractor``: ``shared.adapters.textract`` as shipped (textractor's response parser, layout
  and tables as markdown);
- ``hand parser``: the adapter as it was before (boto3 and a ~60-line parser of PAGE/LINE/WORD
  blocks, kept here only for this comparison), with the same imports of docpipe's models.

Both first import ``handlers.ocr``, what every OCR child loads whatever its engine, and the
figures start there. numpy is made unimportable in the child unless ``--with-numpy``: the
bench extra installs it (matplotlib), the Lambda zip and the image do not, and textractor
imports it only where it is present. The child reports VmRSS after the imports and after the parse, VmHWM (peak) and the seconds
each took, from ``/proc/self/status``; the figures are medians over ``--runs``. Writes
``textract_rss.json`` and ``textract_rss.png`` under ``--out``. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RESPONSE = ROOT.parent / "shared" / "fixtures" / "textract" / "form.png.textract.json"

CHILD = r'''
import json, sys, time

def status():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0])  # kB
    return fields

which, response_path, with_numpy = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
if not with_numpy:
    sys.modules["numpy"] = None  # import numpy raises ImportError, as where it is not installed
response = json.loads(open(response_path).read())
import handlers.ocr  # what every OCR child loads, whatever its engine
before = status()
started = time.perf_counter()
if which == "textractor":
    from shared.adapters.textract import TextractOcr, parse_blocks
    import boto3
    client = boto3.client("textract", region_name="us-east-1")
    TextractOcr(client, features=("LAYOUT", "TABLES"))
else:
    import statistics as _stats
    import boto3, botocore.config, botocore.exceptions
    from shared.models import Box, Line, PageText, Word
    from shared.ports import OcrEngine
    from shared.settings import Settings
    client = boto3.client("textract", region_name="us-east-1")

    def _children(block):
        for relationship in block.get("Relationships") or ():
            if relationship.get("Type") == "CHILD":
                yield from relationship.get("Ids") or ()

    def _box(block):
        bounds = (block.get("Geometry") or {}).get("BoundingBox") or {}
        left, top = float(bounds.get("Left", 0.0)), float(bounds.get("Top", 0.0))
        width, height = float(bounds.get("Width", 0.0)), float(bounds.get("Height", 0.0))
        return Box.from_pixels(left, top, left + width, top + height, 1.0, 1.0)

    def _confidence(block):
        value = block.get("Confidence")
        return None if value is None else min(1.0, max(0.0, float(value) / 100))

    def parse_blocks(blocks, page_number, duration_ms=0.0):
        by_id = {block.get("Id"): block for block in blocks}
        pages = [block for block in blocks if block.get("BlockType") == "PAGE"]
        ordered = [by_id.get(i) for page in pages for i in _children(page)]
        lines = [block for block in ordered if block is not None and block.get("BlockType") == "LINE"]
        named = {line.get("Id") for line in lines}
        lines += [b for b in blocks if b.get("BlockType") == "LINE" and b.get("Id") not in named]
        out_lines, out_words = [], []
        for line in lines:
            out_lines.append(Line(text=line.get("Text", ""), box=_box(line), confidence=_confidence(line)))
            for word_id in _children(line):
                word = by_id.get(word_id)
                if word is not None and word.get("BlockType") == "WORD":
                    out_words.append(Word(text=word.get("Text", ""), box=_box(word), confidence=_confidence(word)))
        confidences = [w.confidence for w in out_words if w.confidence is not None]
        return PageText(page_number=page_number, text="\n".join(l.text for l in out_lines), lines=out_lines,
                        words=out_words, confidence=_stats.fmean(confidences) if confidences else None,
                        engine="textract", duration_ms=duration_ms)
imported_s = time.perf_counter() - started
after_import = status()
started = time.perf_counter()
text = parse_blocks(response["Blocks"], 1)
parsed_s = time.perf_counter() - started
after_parse = status()
print(json.dumps({
    "start_rss_kb": before["VmRSS"], "import_rss_kb": after_import["VmRSS"], "parse_rss_kb": after_parse["VmRSS"],
    "peak_rss_kb": after_parse["VmHWM"], "import_s": imported_s, "parse_s": parsed_s,
    "lines": len(text.lines), "words": len(text.words), "layout": len(text.layout), "tables": len(text.tables),
}))
'''

VARIANTS = ("hand parser", "textractor")


def run_child(which: str, response: Path, with_numpy: bool) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # boto3 builds a client without looking anything up; no request is ever sent.
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, which, str(response), "1" if with_numpy else "0"], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--response", type=Path, default=DEFAULT_RESPONSE)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--with-numpy", action="store_true",
        help="let textractor import numpy (the bench extra installs it; the Lambda zip and the image do not have it)",
    )
    args = parser.parse_args()
    if not args.response.is_file():
        sys.exit(f"no recorded response at {args.response} (../shared/fixtures/textract)")

    results: dict[str, dict] = {}
    for which in VARIANTS:
        runs = [run_child(which, args.response, args.with_numpy) for _ in range(args.runs)]
        keys = ("start_rss_kb", "import_rss_kb", "parse_rss_kb", "peak_rss_kb", "import_s", "parse_s")
        results[which] = {k: statistics.median(r[k] for r in runs) for k in keys}
        results[which].update({k: runs[0][k] for k in ("lines", "words", "layout", "tables")})

    hand, lib = results["hand parser"], results["textractor"]
    print(f"response: {args.response.name}, {hand['lines']} lines, {hand['words']} words; median of {args.runs} "
          f"fresh processes; numpy {'importable' if args.with_numpy else 'absent (as deployed)'}")
    print(f"{'':<14}{'import MB':>10}{'parsed MB':>10}{'peak MB':>9}{'import s':>10}{'parse ms':>10}"
          f"{'layout':>8}{'tables':>8}")
    for which in VARIANTS:
        r = results[which]
        print(f"{which:<14}{r['import_rss_kb'] / 1024:>10.1f}{r['parse_rss_kb'] / 1024:>10.1f}"
              f"{r['peak_rss_kb'] / 1024:>9.1f}{r['import_s']:>10.3f}{r['parse_s'] * 1000:>10.1f}"
              f"{r['layout']:>8}{r['tables']:>8}")
    added = (lib["peak_rss_kb"] - hand["peak_rss_kb"]) / 1024
    print(f"textractor adds {added:.1f} MB of peak RSS and {lib['import_s'] - hand['import_s']:.3f} s of import "
          "to an OCR child")

    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"response": args.response.name, "runs": args.runs, "python": sys.version.split()[0],
               "numpy": args.with_numpy,
               "variants": results, "added_peak_rss_mb": round(added, 1)}
    (args.out / "textract_rss.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(results, args.out / "textract_rss.png")
    print(f"wrote {args.out / 'textract_rss.json'} and {args.out / 'textract_rss.png'}")


def _plot(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [("start_rss_kb", "handlers.ocr"), ("import_rss_kb", "adapter imported"),
              ("parse_rss_kb", "response parsed"), ("peak_rss_kb", "peak (VmHWM)")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.38
    for offset, which in zip((-width / 2, width / 2), VARIANTS):
        values = [results[which][key] / 1024 for key, _ in stages]
        bars = ax.bar([i + offset for i in range(len(stages))], values, width, label=which)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks(range(len(stages)), [label for _, label in stages])
    ax.set_ylabel("RSS, MB")
    ax.set_title("An OCR child's RSS: textractor against the hand parser")
    ax.legend(frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
