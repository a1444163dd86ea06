"""What a fresh process per message costs, measured side by side in one run.

1. Isolation overhead: the same tiny messages (a discover for an already-completed file:
   one read, one ledger row) through the container worker's children (forkserver, and
   spawn for comparison) and through the handlers called in-process. Per-message time is
   the interval between consecutive finished messages; overhead = worker - in-process
   (medians).
2. Preprocess pages/s: an image-only PDF, a black-text PDF and a text PDF with a colour
   letterhead (its pages render in RGB) through the worker's preprocess child (open, render,
   JPEG, store, native text, rows; timed from the child's start to its exit) against a bare
   PyMuPDF render + Pillow JPEG loop (RGB, one thread) over the same pages, alternated, best
   of the repetitions each.

3. A one-page document through the worker against the bare loop: the per-file cost of a
   fresh child (start, import PyMuPDF), the rows, storage and the next stage's message.

4. The OCR path (``bench/_ocr_path.py``): a 142-page scan through ``docpipe process
   --concurrency N`` against bare ``tesseract`` on the same page images, N at a time, at
   N = 1 and 2, side by side (wall and CPU seconds, alternated); the time to the first OCR'd
   page; each page's cost split into engine, the adapter's own work, the stage and the
   hand-off. ``--before REF`` runs that commit's docpipe in the same rounds.

Prints a table, writes bench/results/throughput.{json,png}. Scan, page images: cached in
bench/results/cache. About 8 minutes on two idle cores; ``--full`` repeats each comparison 3
times (the best ratio of each is reported) and times preprocess with 5 repetitions.

    python bench/throughput.py [--tiny 100] [--pages 120] [--reps 3] [--ocr-pages 142]
        [--ocr-concurrency 1,2] [--ocr-reps 1] [--before REF] [--only ocr|preprocess] [--full]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import RESULTS, new_prefix, scanned_pdf, stack_deps, start_stack, text_pdf, write_results  # noqa: E402


def intervals(stamps: list[float]) -> list[float]:
    return [b - a for a, b in zip(stamps, stamps[1:])]


def tiny_messages(deps, sfid, n: int) -> None:
    from shared.models import DiscoverMessage

    for _ in range(n):
        deps.queue.send("discover", DiscoverMessage(shell_file_id=sfid))


def overhead(n: int) -> dict:
    from shared.bootstrap import install
    from shared.runtime.supervisor import Supervisor
    from shared.runtime.worker import Worker
    from shared.submit import submit

    deps = stack_deps(new_prefix("ovh"))
    install(deps)
    work = Path(tempfile.mkdtemp())
    sfid = submit(deps, text_pdf(work / "t.pdf", 1), uuid.uuid4())
    Worker(deps).run(burst=True, idle_sleep_s=0.05)  # the file is completed: discover now skips

    def supervised(isolation: str, count: int) -> list[float]:
        stamps: list[float] = []
        tiny_messages(deps, sfid, count)
        Supervisor(deps.settings, deps.queue, stages=["discover"], concurrency=1, isolation=isolation,
                   include_dlqs=False, on_finish=lambda f: stamps.append(time.perf_counter())).run(burst=True)
        return intervals(stamps)

    def in_process(count: int) -> list[float]:
        stamps: list[float] = []
        tiny_messages(deps, sfid, count)
        Worker(deps, stages=["discover"], include_dlqs=False,
               on_batch=lambda *a: stamps.append(time.perf_counter())).run(burst=True, idle_sleep_s=0.05)
        return intervals(stamps)

    supervised("forkserver", 3)  # start the fork server: a one-off cost, not a per-message one
    runs = {"in-process": [], "forkserver": [], "spawn": []}
    for _ in range(2):  # alternate, so drift on a noisy machine hits both
        runs["in-process"] += in_process(n // 2)
        runs["forkserver"] += supervised("forkserver", n // 2)
    runs["spawn"] = supervised("spawn", max(6, n // 10))
    deps.db.close()
    med = {k: statistics.median(v) * 1000 for k, v in runs.items()}
    return {
        "messages": {k: len(v) + 1 for k, v in runs.items()},
        "median_ms": {k: round(v, 1) for k, v in med.items()},
        "p90_ms": {k: round(statistics.quantiles(v, n=10)[-1] * 1000, 1) for k, v in runs.items() if len(v) > 10},
        "overhead_ms": {k: round(med[k] - med["in-process"], 1) for k in ("forkserver", "spawn")},
        "per_message_ms": {k: [round(x * 1000, 2) for x in v] for k, v in runs.items()},
    }


def bare_loop(path: Path, dpi: int, max_edge: int, quality: int) -> float:
    """The floor: PyMuPDF renders each page, Pillow encodes a JPEG, nothing else."""
    import pymupdf
    from PIL import Image

    t0 = time.perf_counter()
    doc = pymupdf.open(path)
    for page in doc:
        scale = min(dpi / 72, max_edge / max(page.rect.width, page.rect.height))
        pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), colorspace=pymupdf.csRGB, alpha=False)
        img = Image.frombuffer("RGB", (pix.width, pix.height), pix.samples_mv, "raw", "RGB", 0, 1)
        img.save(io.BytesIO(), "JPEG", quality=quality)
        img = pix = None
    pages = doc.page_count
    doc.close()
    return pages / (time.perf_counter() - t0)


def worker_preprocess(path: Path) -> tuple[float, float]:
    """pages/s of one file through a fresh preprocess child (from dequeue to exit)."""
    from shared.runtime.supervisor import Supervisor
    from shared.submit import submit

    deps = stack_deps(new_prefix("tp"))
    sfid = submit(deps, path, uuid.uuid4())
    finished = Supervisor(deps.settings, deps.queue, stages=["preprocess"], include_dlqs=False).run(burst=True)
    row = deps.db.get_shell_file(sfid)
    deps.db.close()
    assert row.status.value in ("ocr", "discovering"), row.status
    return row.page_count / finished[0].duration_s, finished[0].peak_rss_kb / 1024


def throughput(pages: int, reps: int) -> dict:
    from shared.settings import get_settings

    s = get_settings()
    work = Path(tempfile.mkdtemp())
    files = {
        "image-only PDF": scanned_pdf(work / "scan.pdf", pages, seed=7),
        "text PDF": text_pdf(work / "text.pdf", pages),
        "text PDF, colour letterhead": text_pdf(work / "letterhead.pdf", pages, letterhead=True),
    }
    out = {}
    for kind, path in files.items():
        bare, worker, peaks = [], [], []
        for _ in range(reps):
            bare.append(bare_loop(path, s.render_dpi, s.render_max_edge, s.jpeg_quality))
            pps, peak = worker_preprocess(path)
            worker.append(pps)
            peaks.append(peak)
        out[kind] = {
            "pages": pages,
            "bare_pages_per_s": round(max(bare), 2),
            "worker_pages_per_s": round(max(worker), 2),
            "ratio": round(max(worker) / max(bare), 3),
            "all_bare": [round(x, 2) for x in bare],
            "all_worker": [round(x, 2) for x in worker],
            "child_peak_rss_mb": round(max(peaks), 1),
        }
    return out


def fixed_cost(reps: int) -> dict:
    """A one-page document: what a preprocess message costs beyond its page (the child's
    start, importing PyMuPDF, the rows, the storage writes and the next stage's message)."""
    from shared.settings import get_settings

    s = get_settings()
    path = text_pdf(Path(tempfile.mkdtemp()) / "one.pdf", 1, letterhead=True)
    bare = [1000 / bare_loop(path, s.render_dpi, s.render_max_edge, s.jpeg_quality) for _ in range(reps)]
    worker = [1000 / worker_preprocess(path)[0] for _ in range(reps)]
    return {"bare_ms": round(statistics.median(bare), 1), "worker_ms": round(statistics.median(worker), 1)}


def plot(data: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("overhead", "throughput", "ocr_path") if k in data]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    axes = dict(zip(panels, axes[0]))
    if "ocr_path" in data:
        _plot_ocr_path(data["ocr_path"], axes["ocr_path"])
    if "overhead" not in data:
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        return
    a, b = axes["overhead"], axes["throughput"]
    per = data["overhead"]["per_message_ms"]
    a.boxplot([per["in-process"], per["forkserver"]], tick_labels=["in-process", "forkserver child"], showfliers=False)
    a.set_ylabel("ms per tiny message")
    a.set_title(f"isolation overhead: +{data['overhead']['overhead_ms']['forkserver']} ms median")
    kinds = list(data["throughput"])
    xs = range(len(kinds))
    a_vals = [data["throughput"][k]["bare_pages_per_s"] for k in kinds]
    w_vals = [data["throughput"][k]["worker_pages_per_s"] for k in kinds]
    b.bar([x - 0.2 for x in xs], a_vals, width=0.4, label="bare PyMuPDF render + JPEG")
    b.bar([x + 0.2 for x in xs], w_vals, width=0.4, label="docpipe worker preprocess")
    b.set_xticks(list(xs), [k.replace(", ", ",\n") for k in kinds])
    b.set_ylabel("pages/s")
    b.set_title("preprocess throughput")
    b.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def _plot_ocr_path(ocr: dict, ax) -> None:
    rows = ocr["by_concurrency"]
    xs = list(range(len(rows)))
    labels = [f"concurrency {c}" for c in rows]
    best = [min(rows[c]["runs"], key=lambda r: r["ratio"]) for c in rows]
    ax.bar([x - 0.27 for x in xs], [r["bare"]["wall_s"] for r in best], 0.27, label="bare tesseract")
    ax.bar(xs, [r["docpipe"]["wall_s"] for r in best], 0.27, label="docpipe process")
    if all("before" in r for r in best):
        ax.bar([x + 0.27 for x in xs], [r["before"]["wall_s"] for r in best], 0.27, label="docpipe before")
    for x, c, r in zip(xs, rows, best):
        ax.text(x, r["docpipe"]["wall_s"], f"{rows[c]['ratio']}x\n(CPU {rows[c]['cpu_ratio']}x)", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(xs, labels)
    ax.set_ylabel("seconds, wall")
    ax.set_title(f"OCR path: {ocr['pages']}-page scan, end to end")
    ax.legend(loc="lower right", fontsize=8)


def _git_tree(ref: str) -> Path:
    """The tree of commit ``ref``, exported to a temp dir (removed at exit)."""
    import atexit
    import shutil
    import subprocess

    from bench._stack import REPO

    tree = Path(tempfile.mkdtemp(prefix="docpipe-before-"))
    atexit.register(shutil.rmtree, tree, True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def print_ocr_path(ocr: dict) -> None:
    print(f"\nOCR path: {ocr['pages']}-page scan, `docpipe process` against bare `tesseract IMG stdout --psm 3`"
          " (OMP_THREAD_LIMIT=1) on the same page images, same concurrency, alternated:")
    print(f"{'concurrency':>11} {'docpipe s':>10} {'bare s':>7} {'ratio':>6} {'CPU ratio':>9} {'1st page s':>10}"
          f" {'before ratio':>12} {'before 1st page s':>17}")
    for c, row in ocr["by_concurrency"].items():
        best = min(row["runs"], key=lambda r: r["ratio"])
        print(f"{c:>11} {best['docpipe']['wall_s']:>10} {best['bare']['wall_s']:>7} {row['ratio']:>6}"
              f" {row['cpu_ratio']:>9} {row['first_ocr_page_s']:>10} {row.get('before_ratio', '-'):>12}"
              f" {row.get('before_first_ocr_page_s', '-'):>17}")
        print("      per page (ms): " + "; ".join(f"{k} {v}" for k, v in row["split_ms_per_page"].items()))
        trace = best["docpipe"].get("trace")
        if trace:
            print("      fixed (s): " + "; ".join(f"{k} {v}" for k, v in trace["fixed_s"].items()))
            print("      timeline (s): " + "; ".join(f"{k} {v}" for k, v in trace["timeline_s"].items()))
            print(f"      a message ({trace['ocr_messages']} for {trace['ocr_pages']} pages; median ms, total s): "
                  + "; ".join(f"{k.strip()} {v['median']}, {v['total_s']}"
                              for k, v in trace["per_ocr_message_ms"].items()))
            print("      CPU (s): " + "; ".join(f"{k} {v}" for k, v in trace["cpu_s"].items())
                  + f"; parent's receives {trace['parent_receives']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", type=int, default=100)
    parser.add_argument("--pages", type=int, default=120)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ocr-pages", type=int, default=142)
    parser.add_argument("--ocr-concurrency", default="1,2")
    parser.add_argument("--ocr-reps", type=int, default=1)
    parser.add_argument("--before", default=None, help="a commit whose docpipe also runs the OCR path")
    parser.add_argument("--only", choices=["ocr", "preprocess"], default=None)
    parser.add_argument("--full", action="store_true", help="3 rounds of each OCR comparison, 5 of preprocess")
    parser.add_argument("--trace", action="store_true",
                        help="run docpipe under bench/_trace.py: each run's non-engine costs, message by message")
    args = parser.parse_args()
    if args.full:
        args.ocr_reps, args.reps = max(args.ocr_reps, 3), max(args.reps, 5)
    data: dict = {}
    if args.only != "ocr":
        stack = start_stack()
        try:
            data["overhead"] = overhead(args.tiny)
            data["throughput"] = throughput(args.pages, args.reps)
            data["one_page"] = fixed_cost(max(5, args.reps))
        finally:
            stack.stop()
    if args.only != "preprocess":
        from bench._ocr_path import ocr_path

        before = _git_tree(args.before) if args.before else None
        data["ocr_path"] = ocr_path(args.ocr_pages, [int(c) for c in args.ocr_concurrency.split(",")], args.ocr_reps,
                                    before, args.trace)
        if args.before:
            data["ocr_path"]["before"] = args.before
        print_ocr_path(data["ocr_path"])
    if "overhead" in data:
        print_preprocess(data)
    path = write_results("throughput", data)
    plot(data, RESULTS / "throughput.png")
    print(f"\nwrote {path} and {RESULTS / 'throughput.png'}")
    return 0


def print_preprocess(data: dict) -> None:
    o = data["overhead"]
    print(f"\nisolation overhead (median per tiny message; n = {o['messages']}):")
    for k, v in o["median_ms"].items():
        extra = f"  overhead {o['overhead_ms'][k]:+.1f} ms" if k in o["overhead_ms"] else ""
        print(f"  {k:11} {v:7.1f} ms{extra}")
    print(f"\n{'preprocess':28} {'bare pages/s':>13} {'worker pages/s':>15} {'ratio':>6} {'child peak MB':>14}")
    for k, v in data["throughput"].items():
        print(f"{k:28} {v['bare_pages_per_s']:>13} {v['worker_pages_per_s']:>15} {v['ratio']:>6} {v['child_peak_rss_mb']:>14}")
    one = data["one_page"]
    print(
        f"\na 1-page document (medians): worker child {one['worker_ms']} ms from start to exit,"
        f" bare render + JPEG {one['bare_ms']} ms"
    )


if __name__ == "__main__":
    sys.exit(main())
