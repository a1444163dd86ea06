"""The OCR path end to end against bare Tesseract (bench/throughput.py's ``ocr path`` section).

The document: the generated scanned sample's pages repeated to ``pages`` pages (an image-only
PDF, as a clinic's scanner makes them), cached under bench/results/cache with its page images,
which are the JPEGs preprocess stores (rendered by ``shared.pages.documents``, 200 dpi).

Side by side in one run, at each concurrency, the two alternated:
- bare: ``tesseract IMG stdout --psm 3`` with ``OMP_THREAD_LIMIT=1`` on those page images,
  ``concurrency`` at a time: the OCR bound;
- docpipe: ``docpipe process FILE --concurrency N`` as a user runs it (a fresh process: its
  local stack's start, submit, preprocess, every OCR message in a fresh child, discover), in a
  new data dir: a user's first run, initdb and migrations included (a re-run in the same data
  dir skips both). Timed until the command has exited and its output is closed, as a script
  reading it waits.

Then, from the run's own database (``pipeline_runs``, ``ocr_text_extractions``): the time to
the first OCR'd page, and each OCR page's cost split into the engine (bare Tesseract's median
on the same page image), the adapter's own work (checks, preparation, output parsing: the
adapter's time less the engine's), the stage around it (download, upsert, fan-in: the OCR
handler's time less the adapter's) and the hand-off (the rest of the wall time per page at that
concurrency: the child, its imports and connections, the queue, idle slots).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._stack import REPO, RESULTS

CACHE = RESULTS / "cache"


def scanned_document(pages: int) -> Path:
    """The scanned sample's pages repeated to ``pages`` pages (cached: it does not change)."""
    import pymupdf

    import docpipe_samples as samples

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"scan-{pages}.pdf"
    if path.is_file():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        sample = samples.write_samples(Path(tmp))["scanned_discharge.pdf"]
        with pymupdf.open(sample) as source, pymupdf.open() as out:
            while out.page_count < pages:
                out.insert_pdf(source, to_page=min(source.page_count, pages - out.page_count) - 1)
            out.save(path.with_suffix(".tmp"), garbage=3, deflate=True)
    path.with_suffix(".tmp").rename(path)
    return path


def page_images(document: Path) -> list[Path]:
    """The page JPEGs this checkout's preprocess stores for ``document``, made afresh in each
    run (a cache keyed by the document would outlive a change to how pages are stored)."""
    from shared.pages.documents import Limits, open_document
    from shared.pages.sniff import sniff
    from shared.settings import Settings

    digest = hashlib.sha256(document.read_bytes()).hexdigest()[:16]
    folder = Path(tempfile.mkdtemp(prefix=f"docpipe-pages-{digest}-"))
    atexit.register(shutil.rmtree, folder, True)
    with open_document(document, sniff(document), Limits.from_settings(Settings())) as opened:
        for page in opened.pages():
            (folder / f"page-{page.page_number:04d}.jpg").write_bytes(page.jpeg)
            page.release()
    return sorted(folder.glob("page-*.jpg"))


_compiled: set[Path] = set()


def compile_tree(tree: Path) -> None:
    """Byte-compile a tree's code once, as ``pip install`` does: without it (this environment
    sets PYTHONDONTWRITEBYTECODE) every process of the run, each child included (multiprocessing
    imports the main module, ``shared.cli``, in each), compiles what it imports from source."""
    if tree not in _compiled:
        subprocess.run([sys.executable, "-m", "compileall", "-q", "shared", "handlers"], cwd=tree,
                       stdout=subprocess.DEVNULL, check=True)
        _compiled.add(tree)


def _tesseract(image: Path) -> tuple[float, float]:
    """(start, seconds) of one bare reading."""
    env = {"PATH": os.path.dirname(shutil.which("tesseract")) + os.pathsep + os.defpath, "OMP_THREAD_LIMIT": "1"}
    started = time.perf_counter()
    subprocess.run(["tesseract", str(image), "stdout", "--psm", "3"], env=env, stdin=subprocess.DEVNULL,
                   capture_output=True, check=True)
    return started, time.perf_counter() - started


def _become_subreaper() -> None:
    """Adopt this process's orphaned descendants (``docpipe process``'s fork server, its
    Postgres), so that their CPU time, once they are reaped, counts in RUSAGE_CHILDREN."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _reap_orphans(timeout_s: float = 10.0, quiet_s: float = 1.0) -> None:
    """Reap adopted descendants as they exit, until none has for ``quiet_s``."""
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last < quiet_s:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)
        else:
            last = time.monotonic()


def _children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare(images: list[Path], concurrency: int) -> dict:
    """Bare Tesseract over ``images``, ``concurrency`` at a time."""
    cpu0 = _children_cpu_s()
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(_tesseract, images))
    wall = time.perf_counter() - t0
    cpu = _children_cpu_s() - cpu0
    seconds = [s for _, s in runs]
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "first_page_s": round(min(start + s for start, s in runs) - t0, 2),
        "page_s_median": round(statistics.median(seconds), 3),
        "page_s_mean": round(statistics.fmean(seconds), 4),
        "page_s": [round(s, 3) for s in seconds],
    }


def docpipe(document: Path, concurrency: int, tree: Path = REPO, trace: bool = False) -> dict:
    """``docpipe process`` on ``document`` in a fresh process and data dir (the code of
    ``tree``: this checkout, or another commit's for a before/after); wall and CPU time, then
    the split read back from that run's database. With ``trace``, under ``bench._trace`` (its
    summary under "trace": where the time besides the engine goes)."""
    compile_tree(tree)
    data_dir = Path(tempfile.mkdtemp(prefix="docpipe-bench-ocr-"))
    env = {**os.environ, "PYTHONPATH": str(tree) + (os.pathsep + str(REPO) if trace else "")}
    trace_file = data_dir / "trace.jsonl"
    if trace:
        env.update(DOCPIPE_BENCH_TRACE=str(trace_file), PYTHONWARNINGS="ignore")
    for name in ("DATABASE_URL", "AWS_ENDPOINT_URL", "SQS_ENDPOINT_URL", "S3_ENDPOINT_URL", "QUEUE_PREFIX",
                 "STORAGE_BACKEND", "LOCAL_STORAGE_DIR", "STORAGE_BUCKET"):
        env.pop(name, None)  # the command starts its own stack
    _become_subreaper()
    _reap_orphans(quiet_s=0)
    cpu0 = _children_cpu_s()
    started_at = time.time()
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bench._trace" if trace else "shared.cli", "process", str(document), "--concurrency", str(concurrency),
         "--data-dir", str(data_dir), "--quiet", "--json"],
        env=env, cwd=tree, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    _reap_orphans()
    cpu = _children_cpu_s() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"docpipe process exited {done.returncode}: {done.stderr[-2000:]}")
    try:
        out = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), **_split(data_dir, started_at)}
        if trace:
            from bench._trace import summarise

            out["trace"] = summarise(trace_file)
        return out
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _split(data_dir: Path, started_at: float) -> dict:
    """Per-stage and per-page figures from the run's database (its Postgres started again)."""
    import pgserver
    import psycopg
    from psycopg.rows import dict_row

    server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    try:
        with psycopg.connect(server.get_uri(), row_factory=dict_row) as conn:
            def q(sql: str) -> list[dict]:
                return conn.execute(sql).fetchall()

            (f,) = q("select id, page_count, status, extract(epoch from created_at) as created from shell_files")
            runs = q("select stage, duration_ms, extract(epoch from started_at) as started, outcome"
                     " from pipeline_runs order by started_at")
            texts = q("select page_number, duration_ms, extract(epoch from created_at) as at"
                      " from ocr_text_extractions where engine = 'tesseract' order by created_at")
    finally:
        server.cleanup()
    ocr_runs = [r["duration_ms"] for r in runs if r["stage"] == "ocr" and r["outcome"] == "succeeded"]
    preprocess = [r for r in runs if r["stage"] == "preprocess"]
    discover = [r for r in runs if r["stage"] == "discover"]
    return {
        "status": f["status"],
        "pages": f["page_count"],
        "ocr_pages": len(texts),
        "first_ocr_page_s": round(float(texts[0]["at"]) - started_at, 2) if texts else None,
        "submitted_s": round(float(f["created"]) - started_at, 2),
        "preprocess_ms": round(sum(r["duration_ms"] for r in preprocess), 1),
        "preprocess_started_s": round(float(preprocess[0]["started"]) - started_at, 2) if preprocess else None,
        "discover_ms": round(sum(r["duration_ms"] for r in discover), 1),
        "ocr_handler_ms_median": round(statistics.median(ocr_runs), 1) if ocr_runs else None,
        "ocr_handler_ms_mean": round(statistics.fmean(ocr_runs), 1) if ocr_runs else None,
        # A message reads several pages: the handler's time a page is its sum over the pages.
        "ocr_handler_ms_per_page": round(sum(ocr_runs) / len(texts), 1) if texts else None,
        "adapter_ms_median": round(statistics.median(t["duration_ms"] for t in texts), 1) if texts else None,
        "adapter_ms_mean": round(statistics.fmean(t["duration_ms"] for t in texts), 1) if texts else None,
        "ocr_messages": len(ocr_runs),
    }


def ocr_path(pages: int, concurrencies: list[int], reps: int, before: Path | None = None, trace: bool = False) -> dict:
    """The document through docpipe and bare Tesseract at each concurrency, ``reps`` times
    alternated; with ``before`` (another commit's tree) that code too, in the same rounds."""
    document = scanned_document(pages)
    images = page_images(document)
    out: dict = {"pages": len(images), "document": document.name, "by_concurrency": {}}
    for concurrency in concurrencies:
        rows = []
        for rep in range(reps):  # alternate which goes first: drift on a shared machine hits both
            order = ["bare", "docpipe"] + (["before"] if before else [])
            order = order if rep % 2 == 0 else order[::-1]
            row = {}
            for which in order:
                if which == "bare":
                    row[which] = bare(images, concurrency)
                else:
                    # Traced: this checkout only (the tracer is this checkout's bench module)
                    row[which] = docpipe(document, concurrency, before if which == "before" else REPO,
                                         trace and which == "docpipe")
            row["ratio"] = round(row["docpipe"]["wall_s"] / row["bare"]["wall_s"], 3)
            row["cpu_ratio"] = round(row["docpipe"]["cpu_s"] / row["bare"]["cpu_s"], 3)
            if before:
                row["before_ratio"] = round(row["before"]["wall_s"] / row["bare"]["wall_s"], 3)
                row["before_cpu_ratio"] = round(row["before"]["cpu_s"] / row["bare"]["cpu_s"], 3)
                print(f"  before ({before}): {row['before']['wall_s']} s, ratio {row['before_ratio']};"
                      f" CPU ratio {row['before_cpu_ratio']}", flush=True)
            rows.append(row)
            print(f"  ocr path, concurrency {concurrency}, run {rep + 1}: docpipe {row['docpipe']['wall_s']} s,"
                  f" bare {row['bare']['wall_s']} s, ratio {row['ratio']}; CPU {row['docpipe']['cpu_s']} s"
                  f" against {row['bare']['cpu_s']} s, ratio {row['cpu_ratio']}", flush=True)
        best = min(rows, key=lambda r: r["ratio"])
        best_before = min(rows, key=lambda r: r["before_ratio"]) if before else None
        out["by_concurrency"][str(concurrency)] = {
            "ratio": best["ratio"],
            "ratios": [r["ratio"] for r in rows],
            "cpu_ratio": best["cpu_ratio"],
            "cpu_ratios": [r["cpu_ratio"] for r in rows],
            "first_ocr_page_s": best["docpipe"]["first_ocr_page_s"],
            "bare_first_page_s": best["bare"]["first_page_s"],
            # The before's figures are its best run's, as docpipe's are: one run, not the best of each.
            **({"before_ratio": best_before["before_ratio"],
                "before_cpu_ratio": best_before["before_cpu_ratio"],
                "before_first_ocr_page_s": best_before["before"]["first_ocr_page_s"]} if before else {}),
            "split_ms_per_page": _per_page(best, concurrency, len(images)),
            "runs": [{k: {kk: vv for kk, vv in v.items() if kk != "page_s"} if isinstance(v, dict) else v
                      for k, v in r.items()} for r in rows],
        }
    return out


def _per_page(row: dict, concurrency: int, pages: int) -> dict:
    """Means a page, so that the parts add up (a message reads several pages)."""
    d, b = row["docpipe"], row["bare"]
    engine = b["page_s_mean"] * 1000
    adapter, handler = d["adapter_ms_mean"], d["ocr_handler_ms_per_page"]
    per_page_wall = d["wall_s"] * 1000 * concurrency / pages
    return {
        "engine (bare tesseract)": round(engine, 1),
        "adapter: checks, preparation, parsing": round(adapter - engine, 1),
        "stage: download, upsert, fan-in": round(handler - adapter, 1),
        "hand-off and the rest (per page x concurrency)": round(per_page_wall - handler, 1),
        "docpipe wall per page x concurrency": round(per_page_wall, 1),
        "bare wall per page x concurrency": round(b["wall_s"] * 1000 * concurrency / pages, 1),
    }
