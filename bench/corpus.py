"""Hostile inputs: every file of ../shared/corpus/{pdfs,images} through the container worker.

Submits every corpus file (listed or not in the folder's manifest.csv) on a local stack, runs
`docpipe worker --burst --concurrency 2` as a subprocess, and records per file: its end
(completed / failed / non-terminal), error_code, seconds, and the manifest's category. A
worker that exits non-zero is a worker death (it is restarted so the run can finish); a file
still non-terminal when the worker drained the queues is a hang.

OCR costs about a second a page, so the run caps pages with MAX_PAGES (default 50): the few
long documents fail fast as too_many_pages instead of taking most of the run. Say so when
quoting the figures. Prints a table of outcomes by category, writes
bench/results/corpus.{json,png}.

    python bench/corpus.py [--max-pages 50] [--concurrency 2] [--stage-timeout 120] [--only pdfs|images]
"""

from __future__ import annotations

import argparse
import collections
import csv
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import REPO, RESULTS, new_prefix, stack_deps, start_stack, write_results  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus"
FOLDERS = ("pdfs", "images")
_SKIP = {"manifest.csv", "SOURCES.md"}
TERMINAL = ("completed", "failed")


def corpus_files(root: Path = CORPUS, folders=FOLDERS) -> list[dict]:
    """Every file of the corpus folders with its manifest category ('unlisted' if absent)."""
    out = []
    for folder in folders:
        base = root / folder
        if not base.is_dir():
            continue
        meta = {}
        manifest = base / "manifest.csv"
        if manifest.is_file():
            with manifest.open(newline="", encoding="utf-8") as f:
                meta = {row["file"]: row for row in csv.DictReader(f)}
        for path in sorted(base.iterdir()):
            if path.name in _SKIP or not path.is_file():
                continue
            row = meta.get(path.name, {})
            out.append({
                "folder": folder,
                "file": path.name,
                "path": path,
                "category": row.get("category") or "unlisted",
                "user_password": bool(row.get("user_password")),
                "pages_mupdf": row.get("pages_mupdf"),
            })
    return out


def _worker(env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "worker", "--burst", "--concurrency", str(env["_CONCURRENCY"])],
        cwd=REPO, env={k: v for k, v in {**os.environ, **env}.items() if not k.startswith("_")},
        stdout=subprocess.DEVNULL, stderr=log,
    )


def run(files: list[dict], max_pages: int, concurrency: int, stage_timeout_s: float, deadline_s: float) -> dict:
    from shared.submit import submit

    prefix = new_prefix("corpus")
    deps = stack_deps(prefix)
    patient = uuid.uuid4()
    for item in files:
        item["id"] = submit(deps, item["path"], patient)
    ids = [item["id"] for item in files]
    env = {
        "QUEUE_PREFIX": prefix, "MAX_PAGES": str(max_pages), "STAGE_TIMEOUT_S": str(stage_timeout_s),
        "WORKER_POLL_WAIT_S": "1", "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true",
        "_CONCURRENCY": concurrency,
    }
    log_path = Path(tempfile.mkdtemp(prefix="docpipe-corpus-log-")) / "worker.stderr"
    deaths: list[int] = []
    exits: list[int] = []
    t0 = time.monotonic()
    with log_path.open("w") as log:  # kept only for a death's tail in the JSON
        while True:
            proc = _worker(env, log)
            try:
                code = proc.wait(timeout=max(1.0, deadline_s - (time.monotonic() - t0)) + 60)
            except subprocess.TimeoutExpired:
                # Past the run's deadline: stop it gracefully; what is left counts as hangs.
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=120)
            exits.append(code)
            if code != 0:
                deaths.append(code)
            left = deps.db.query(
                "select count(*) as n from shell_files where id = any(%s) and status not in ('completed', 'failed')",
                (ids,))[0]["n"]
            # A drained burst worker with files left: a death to retry, or a hang to report.
            if left == 0 or code == 0 or time.monotonic() - t0 > deadline_s:
                break
    elapsed = time.monotonic() - t0

    rows = {r["id"]: r for r in deps.db.query(
        "select id, status, error_code, page_count, updated_at, extract(epoch from (updated_at - created_at)) as wall_s"
        " from shell_files where id = any(%s)", (ids,))}
    runs = deps.db.query(
        "select shell_file_id, sum(duration_ms) as ms, count(*) as n, min(started_at) as first_at,"
        " count(*) filter (where error_code in ('crash', 'killed', 'memory_cap', 'timeout')) as abnormal,"
        " max(peak_rss_kb) as peak_kb from pipeline_runs where shell_file_id = any(%s) group by shell_file_id",
        (ids,))
    by_run = {r["shell_file_id"]: r for r in runs}
    results = []
    for item in files:
        row, r = rows[item["id"]], by_run.get(item["id"], {})
        results.append({
            "folder": item["folder"], "file": item["file"], "category": item["category"],
            "user_password": item["user_password"], "outcome": row["status"], "error_code": row["error_code"],
            "page_count": row["page_count"],
            # seconds: the file's own work, the sum of its stage runs (what MAX_PAGES and
            # STAGE_TIMEOUT_S bound); span: first stage start to its end (includes waiting for
            # the worker between stages); since_submit: includes the wait behind every other file.
            "seconds": round(float(r.get("ms") or 0) / 1000, 2),
            "span_seconds": (round((row["updated_at"] - r["first_at"]).total_seconds(), 2)
                             if r.get("first_at") else None),
            "since_submit_seconds": round(float(row["wall_s"] or 0), 2), "stage_runs": int(r.get("n") or 0),
            "abnormal_child_ends": int(r.get("abnormal") or 0),
            "peak_rss_mb": round((r.get("peak_kb") or 0) / 1024, 1),
        })
    depths = {q: deps.queue.depth(q) for q in ("preprocess", "ocr", "discover",
                                               "preprocess-dlq", "ocr-dlq", "discover-dlq")}
    deps.db.close()
    log_tail = log_path.read_text()[-4000:] if deaths else ""
    shutil.rmtree(log_path.parent, ignore_errors=True)
    return {
        "max_pages": max_pages, "concurrency": concurrency, "stage_timeout_s": stage_timeout_s,
        "elapsed_s": round(elapsed, 1), "worker_exits": exits, "worker_deaths": len(deaths),
        "hangs": [r["file"] for r in results if r["outcome"] not in TERMINAL],
        "queue_depths_after": depths, "worker_log_tail": log_tail,
        "files": results,
    }


def table(results: list[dict]) -> list[dict]:
    by_cat: dict[str, dict] = collections.defaultdict(lambda: {"n": 0, "completed": 0, "failed": 0, "other": 0,
                                                                "codes": collections.Counter(), "max_s": 0.0})
    for r in results:
        c = by_cat[f"{r['folder']}/{r['category']}"]
        c["n"] += 1
        c[r["outcome"] if r["outcome"] in TERMINAL else "other"] += 1
        if r["error_code"]:
            c["codes"][r["error_code"]] += 1
        c["max_s"] = max(c["max_s"], r["seconds"])
    return [{"category": k, **{**v, "codes": dict(v["codes"])}} for k, v in sorted(by_cat.items())]


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["category"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, max(4, 0.28 * len(rows))))
    left = [0] * len(rows)
    for key, colour in (("completed", "tab:green"), ("failed", "tab:orange"), ("other", "tab:red")):
        vals = [r[key] for r in rows]
        ax.barh(names, vals, left=left, color=colour, label=key)
        left = [a + b for a, b in zip(left, vals)]
    ax.invert_yaxis()
    ax.set_xlabel("files")
    ax.set_title("Corpus files by category: how each ended")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-pages", type=int, default=50, help="MAX_PAGES for the worker (longer: too_many_pages)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--stage-timeout", type=float, default=120.0, help="STAGE_TIMEOUT_S: the per-stage bound")
    parser.add_argument("--deadline", type=float, default=1500.0, help="give up on the whole run after this, s")
    parser.add_argument("--only", choices=FOLDERS, default=None)
    args = parser.parse_args()

    files = corpus_files(folders=[args.only] if args.only else FOLDERS)
    if not files:
        print(f"no corpus at {CORPUS}; nothing to do")
        return 0
    print(f"{len(files)} corpus files, MAX_PAGES={args.max_pages}, concurrency {args.concurrency} ...", flush=True)
    stack = start_stack()
    try:
        data = run(files, args.max_pages, args.concurrency, args.stage_timeout, args.deadline)
    finally:
        stack.stop()

    rows = table(data["files"])
    data["by_category"] = rows
    print(f"\n{'category':32} {'n':>3} {'done':>4} {'fail':>4} {'hang':>4} {'max s':>6}  error codes"
          "   (max s: the slowest file's stage time)")
    for r in rows:
        codes = ", ".join(f"{k}={v}" for k, v in sorted(r["codes"].items()))
        print(f"{r['category']:32} {r['n']:>3} {r['completed']:>4} {r['failed']:>4} {r['other']:>4} "
              f"{r['max_s']:>6.1f}  {codes}")
    files_ = data["files"]
    slowest = max(files_, key=lambda r: r["seconds"])
    data["slowest"] = slowest
    total = collections.Counter(r["outcome"] for r in files_)
    untyped = [r["file"] for r in files_ if r["outcome"] == "failed" and not r["error_code"]]
    data["failed_without_code"] = untyped
    print(f"\n{len(files_)} files: {dict(total)}; worker deaths {data['worker_deaths']}; "
          f"hangs {len(data['hangs'])}; failed without a code {len(untyped)}; "
          f"abnormal child ends {sum(r['abnormal_child_ends'] for r in files_)}; {data['elapsed_s']} s")
    print(f"slowest: {slowest['folder']}/{slowest['file']} ({slowest['category']}) {slowest['seconds']} s of stage "
          f"time over {slowest['stage_runs']} runs, {slowest['page_count']} pages, {slowest['outcome']} "
          f"{slowest['error_code'] or ''}")
    spans = [r["span_seconds"] for r in files_ if r["span_seconds"] is not None]
    print(f"longest first-stage-to-end span {max(spans):.1f} s; run time {data['elapsed_s']} s for all files")
    enc = [r for r in files_ if r["category"].startswith("encrypted")]
    for cat in sorted({r["category"] for r in enc}):
        ends = collections.Counter((r["outcome"], r["error_code"]) for r in enc if r["category"] == cat)
        print(f"{cat}: " + ", ".join(f"{o}/{c or '-'}={n}" for (o, c), n in sorted(ends.items(), key=str)))
    path = write_results("corpus", data)
    png = RESULTS / "corpus.png"
    plot(rows, png)
    print(f"\nwrote {path} and {png}")
    return 0 if not data["worker_deaths"] and not data["hangs"] and not untyped else 1


if __name__ == "__main__":
    sys.exit(main())
