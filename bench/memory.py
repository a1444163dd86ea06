"""Memory of the container worker vs the old worker's design, on the same messages.

Three runs over the same documents (text PDFs and scanned PDFs; >= 300 stage messages):
  worker   `docpipe worker`: a small parent, a fresh forkserver child per message
  naive    `docpipe worker --in-process` with RELEASE_NATIVE_CACHES=false: every handler in
           one long-lived process, as the Node worker docpipe replaces ran them
  warm     `docpipe worker --in-process` with the per-record cache release on: how a warm
           Lambda container behaves
Each run samples the serving process's RSS against messages done, and checks /proc/PID/maps
for libmupdf. Then one 300-page image-only PDF through the worker's preprocess stage gives
the child's peak RSS. Prints a table, writes bench/results/memory.{json,png}.

    python bench/memory.py [--text 60] [--scanned 60] [--big-pages 300]

`--messages N` measures the worker parent alone over N tiny messages (dead letters naming no
file, each a fresh child that runs the failures handler on it and acknowledges it; no
database, no document, so the figure is the parent's own): its RSS after the first
100 and its growth to the end, which must stay within 2 MB (issue 12: nothing the parent keeps
grows per message). Writes bench/results/memory_parent.json.

    python bench/memory.py --messages 5000
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._stack import (  # noqa: E402
    RESULTS,
    Sampler,
    docpipe,
    new_prefix,
    rss_kb,
    scanned_pdf,
    stack_deps,
    start_stack,
    text_pdf,
    write_results,
)

MODES = {
    "worker": (["worker", "--concurrency", "2"], {}),
    "naive": (["worker", "--in-process"], {"RELEASE_NATIVE_CACHES": "false"}),
    "warm": (["worker", "--in-process"], {}),
}


def run_mode(mode: str, docs: list[Path], timeout_s: float = 1800) -> dict:
    from shared.submit import submit

    prefix = new_prefix(mode)
    deps = stack_deps(prefix)
    args, extra = MODES[mode]
    proc = docpipe(*args, env={"QUEUE_PREFIX": prefix, "WORKER_POLL_WAIT_S": "1", **extra})
    time.sleep(4.0)  # started, imports done, polling an empty queue
    idle_kb = rss_kb(proc.pid)
    patient = uuid.uuid4()
    ids: list[uuid.UUID] = []

    def done() -> int:
        if not ids:
            return 0
        return deps.db.query("select count(*) as n from pipeline_runs where shell_file_id = any(%s)", (ids,))[0]["n"]

    sampler = Sampler(proc.pid, done)
    sampler.start()
    server: Sampler | None = None  # the worker's fork server, once it has started
    t0 = time.monotonic()
    ids.extend(submit(deps, d, patient) for d in docs)
    while time.monotonic() - t0 < timeout_s:
        if server is None and mode == "worker" and (pid := fork_server_pid(proc.pid)):
            server = Sampler(pid, done)
            server.start()
        left = deps.db.query(
            "select count(*) as n from shell_files where id = any(%s) and status not in ('completed', 'failed')",
            (ids,),
        )[0]["n"]
        if left == 0:
            break
        time.sleep(1.0)
    elapsed = time.monotonic() - t0
    time.sleep(1.0)
    sampler.stop()
    if server is not None:
        server.stop()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    statuses = deps.db.query(
        "select status, count(*) as n from shell_files where id = any(%s) group by status", (ids,)
    )
    peaks = deps.db.query(
        "select stage, peak_rss_kb from pipeline_runs where shell_file_id = any(%s) and peak_rss_kb is not null",
        (ids,),
    )
    messages = done()
    samples = sampler.samples
    after_10 = next((rss for _, rss, n in samples if n >= 10), None)
    final = samples[-1][1] if samples else None
    deps.db.close()
    return {
        "mode": mode,
        "messages": messages,
        "files": {r["status"]: r["n"] for r in statuses},
        "elapsed_s": round(elapsed, 1),
        "idle_rss_mb": round(idle_kb / 1024, 1),
        "rss_after_10_mb": round(after_10 / 1024, 1) if after_10 else None,
        "rss_final_mb": round(final / 1024, 1) if final else None,
        "rss_max_mb": round(max(r for _, r, _ in samples) / 1024, 1) if samples else None,
        "growth_mb": round((final - after_10) / 1024, 1) if final and after_10 else None,
        "libmupdf_mapped": sampler.mupdf_seen,
        "stage_peak_rss_mb": {
            stage: round(max(p["peak_rss_kb"] for p in peaks if p["stage"] == stage) / 1024, 1)
            for stage in sorted({p["stage"] for p in peaks})
        },
        "stage_median_peak_rss_mb": {
            stage: round(statistics.median(p["peak_rss_kb"] for p in peaks if p["stage"] == stage) / 1024, 1)
            for stage in sorted({p["stage"] for p in peaks})
        },
        "samples": [(round(t, 2), rss, n) for t, rss, n in samples],
        "fork_server": _fork_server_figures(server),
    }


def parent_rss(messages: int, concurrency: int = 2, timeout_s: float = 3600) -> dict:
    """The worker parent's RSS over ``messages`` tiny messages, sampled against messages done."""
    import threading

    prefix = new_prefix("parent")
    deps = stack_deps(prefix)
    client, url = deps.queue._client, deps.queue.url("preprocess-dlq")
    sent = [0]

    def done() -> int:
        try:
            return sent[0] - sum(deps.queue.depth("preprocess-dlq"))
        except Exception:  # noqa: BLE001 - a missed sample, not a failed run
            return -1

    def feed() -> None:
        # A short backlog, topped up as the worker drains it: moto's queues slow down with
        # their length, and the parent's figure must not depend on the endpoint's.
        while sent[0] < messages:
            if sum(deps.queue.depth("preprocess-dlq")) < 40:
                n = min(10, messages - sent[0])
                client.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "MessageBody": '{"tiny": %d}' % (sent[0] + i)} for i in range(n)])
                sent[0] += n
            else:
                time.sleep(0.2)

    proc = docpipe("worker", "--stages", "preprocess", "--concurrency", str(concurrency),
                   env={"QUEUE_PREFIX": prefix, "WORKER_POLL_WAIT_S": "1"})
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    sampler = Sampler(proc.pid, done, every=0.5)
    sampler.start()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s and (feeder.is_alive() or done() < messages):
            time.sleep(1.0)
    finally:
        sampler.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    elapsed = time.monotonic() - t0
    samples = [(t, rss, n) for t, rss, n in sampler.samples if n >= 0]
    at_100 = next((rss for _, rss, n in samples if n >= 100), None)
    after = [rss for _, rss, n in samples if n >= 100]
    final = samples[-1][1] if samples else None
    deps.db.close()
    return {
        "messages": messages,
        "done": done(),
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 1),
        "messages_per_s": round(messages / elapsed, 1) if elapsed else None,
        "rss_at_100_mb": round(at_100 / 1024, 2) if at_100 else None,
        "rss_final_mb": round(final / 1024, 2) if final else None,
        "growth_after_100_mb": round((final - at_100) / 1024, 2) if final and at_100 else None,
        "max_above_100_mb": round((max(after) - at_100) / 1024, 2) if after and at_100 else None,
        "flat_within_2_mb": bool(after and at_100 and max(after) - at_100 <= 2048),
        "samples": [(round(t, 1), rss, n) for t, rss, n in samples],
    }


def fork_server_pid(parent: int) -> int | None:
    """The multiprocessing fork server the worker started (a child of the worker process)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"forkserver" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def _fork_server_figures(server: Sampler | None) -> dict | None:
    """The fork server is long-lived too: its RSS after 10 messages and at the end."""
    if server is None or not server.samples:
        return None
    after_10 = next((rss for _, rss, n in server.samples if n >= 10), server.samples[0][1])
    final = server.samples[-1][1]
    return {
        "rss_after_10_mb": round(after_10 / 1024, 1),
        "rss_final_mb": round(final / 1024, 1),
        "growth_mb": round((final - after_10) / 1024, 1),
        "libmupdf_mapped": server.mupdf_seen,
    }


def big_pdf_peak(path: Path, pages: int) -> dict:
    """One image-only PDF of ``pages`` pages through the worker's preprocess stage."""
    from shared.submit import submit

    prefix = new_prefix("big")
    deps = stack_deps(prefix)
    sfid = submit(deps, path, uuid.uuid4())
    t0 = time.monotonic()
    proc = docpipe("worker", "--burst", "--stages", "preprocess", env={"QUEUE_PREFIX": prefix})
    proc.wait(timeout=1800)
    elapsed = time.monotonic() - t0
    row = deps.db.get_shell_file(sfid)
    run = deps.db.query(
        "select peak_rss_kb, duration_ms from pipeline_runs where shell_file_id = %s and stage = 'preprocess'"
        " order by id desc limit 1",
        (sfid,),
    )[0]
    deps.db.close()
    return {
        "pages": pages,
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "status": row.status.value,
        "page_count": row.page_count,
        "child_peak_rss_mb": round(run["peak_rss_kb"] / 1024, 1),
        "preprocess_s": round(run["duration_ms"] / 1000, 1),
        "pages_per_s": round(pages / (run["duration_ms"] / 1000), 1),
        "wall_s": round(elapsed, 1),
    }


def plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    labels = {
        "worker": "docpipe worker: parent (fresh child per message)",
        "naive": "in-process, no cache release (the old worker)",
        "warm": "in-process, cache release per record (warm Lambda)",
    }
    for r in results:
        xs = [n for _, _, n in r["samples"]]
        ys = [rss / 1024 for _, rss, _ in r["samples"]]
        ax.plot(xs, ys, label=labels[r["mode"]])
    ax.set_xlabel("stage messages done")
    ax.set_ylabel("RSS of the serving process (MB)")
    ax.set_title("Memory over the same messages")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=int, default=60, help="3-page text PDFs (2 messages each)")
    parser.add_argument("--scanned", type=int, default=60, help="1-page scanned PDFs (3 messages each)")
    parser.add_argument("--big-pages", type=int, default=300, help="pages of the big image-only PDF (0: skip)")
    parser.add_argument("--modes", default="worker,naive,warm")
    parser.add_argument("--messages", type=int, default=0, help="only the parent's RSS over N tiny messages")
    args = parser.parse_args()

    if args.messages:
        stack = start_stack()
        try:
            print(f"worker parent over {args.messages} tiny messages ...", flush=True)
            result = parent_rss(args.messages)
        finally:
            stack.stop()
        print(f"parent RSS: {result['rss_at_100_mb']} MB after 100 messages, {result['rss_final_mb']} MB after "
              f"{result['done']} ({result['growth_after_100_mb']:+} MB; at most {result['max_above_100_mb']:+} MB above "
              f"the 100-message figure); flat within 2 MB: {result['flat_within_2_mb']}; "
              f"{result['elapsed_s']} s, {result['messages_per_s']} messages/s")
        path = write_results("memory_parent", result)
        print(f"wrote {path}")
        return 0 if result["flat_within_2_mb"] and result["done"] == args.messages else 1

    stack = start_stack()
    try:
        work = Path(tempfile.mkdtemp(prefix="docpipe-bench-docs-"))
        docs = [text_pdf(work / f"t{i}.pdf", 3, seed=i) for i in range(args.text)]
        docs += [scanned_pdf(work / f"s{i}.pdf", 1, seed=i) for i in range(args.scanned)]
        # Interleave, so each run sees the same mixed order.
        docs = [d for pair in zip(docs[: args.text], docs[args.text :]) for d in pair] + docs[
            2 * min(args.text, args.scanned) :
        ]
        results = []
        for mode in args.modes.split(","):
            print(f"running {mode} over {len(docs)} documents ...", flush=True)
            results.append(run_mode(mode, docs))
        big = None
        if args.big_pages:
            print(f"building a {args.big_pages}-page image-only PDF ...", flush=True)
            big = big_pdf_peak(scanned_pdf(work / "big.pdf", args.big_pages, seed=999), args.big_pages)
    finally:
        stack.stop()

    print()
    print(f"{'mode':8} {'msgs':>5} {'files':>18} {'idle MB':>8} {'@10 MB':>7} {'final MB':>8} "
          f"{'growth':>7} {'max MB':>7} {'mupdf in proc':>13} {'time s':>7}  stage peak RSS MB (max)")
    for r in results:
        files = ",".join(f"{k}={v}" for k, v in r["files"].items())
        print(f"{r['mode']:8} {r['messages']:>5} {files:>18} {r['idle_rss_mb']:>8} {r['rss_after_10_mb']:>7} "
              f"{r['rss_final_mb']:>8} {r['growth_mb']:>+7} {r['rss_max_mb']:>7} {str(r['libmupdf_mapped']):>13} "
              f"{r['elapsed_s']:>7}  {r['stage_peak_rss_mb']}")
    for r in results:
        if r["fork_server"]:
            fs = r["fork_server"]
            print(f"\n{r['mode']} fork server: {fs['rss_after_10_mb']} MB after 10 messages, {fs['rss_final_mb']} MB at "
                  f"the end ({fs['growth_mb']:+} MB), libmupdf mapped: {fs['libmupdf_mapped']}")
    if big:
        print(f"\nbig image-only PDF: {big['pages']} pages, {big['file_mb']} MB, {big['status']}, "
              f"child peak RSS {big['child_peak_rss_mb']} MB, preprocess {big['preprocess_s']} s "
              f"({big['pages_per_s']} pages/s)")
    data = {"runs": results, "big_pdf": big}
    path = write_results("memory", data)
    png = RESULTS / "memory.png"
    plot(results, png)
    print(f"\nwrote {path} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
