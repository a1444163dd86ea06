"""Zombies after killed OCR children: the container's PID 1 with and without tini.

`docpipe worker` runs as PID 1 of its own PID namespace (`unshare --pid --fork --mount-proc`,
as in a container), once alone and once under `tini --` (the Dockerfile's ENTRYPOINT). The
bench SIGKILLs OCR children while their Tesseract runs, until KILLS children are dead; the
parent then ends each child's process group (Tesseract with it). A Tesseract orphaned that
way is re-parented to PID 1: tini reaps it, Python as PID 1 never does. After the documents
are done, the zombies (state Z) in the namespace are counted. Needs root (unshare) and tini.
Writes bench/results/zombies.json.

    python bench/zombies.py [--kills 50] [--docs 30] [--without-tini-kills 10]
"""

from __future__ import annotations

import argparse
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

from bench._stack import REPO, new_prefix, scanned_pdf, stack_deps, start_stack, write_results  # noqa: E402


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, comm) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[1]), fields[0], comm)
    return out


def _descendants(root: int, procs: dict) -> dict[int, int]:
    """pid -> depth below ``root`` (1: its children)."""
    found: dict[int, int] = {}
    frontier, depth = {root}, 0
    while frontier:
        depth += 1
        frontier = {pid for pid, (ppid, _, _) in procs.items() if ppid in frontier} - set(found)
        found.update({pid: depth for pid in frontier})
    return found


def run(kills: int, docs: int, tini: bool, work: Path, deadline_s: float = 900) -> dict:
    from shared.submit import submit

    prefix = new_prefix("zomb")
    deps = stack_deps(prefix)
    pdfs = [scanned_pdf(work / f"z{i}.pdf", 1, seed=500 + i, size=(1200, 1600)) for i in range(docs)]
    ids = [submit(deps, p, uuid.uuid4()) for p in pdfs]
    env = {**os.environ, "QUEUE_PREFIX": prefix, "WORKER_POLL_WAIT_S": "1", "RETRY_DELAY_S": "0.1",
           "RETRY_MAX_DELAY_S": "5", "POWERTOOLS_LOG_LEVEL": "ERROR", "MAX_RECEIVE_COUNT": "20"}
    init = ["tini", "--"] if tini else []
    log = (work / f"worker-{'tini' if tini else 'bare'}.log").open("w")
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", *init, sys.executable, "-m", "shared.cli",
                             "worker", "--concurrency", "2"], cwd=REPO, env=env, stdout=log, stderr=log)
    killed: set[int] = set()
    t0 = time.monotonic()
    zombies_max = 0
    try:
        while time.monotonic() - t0 < deadline_s:
            procs = _procs()
            tree = _descendants(proc.pid, procs)
            zombies_max = max(zombies_max, sum(1 for p in tree if procs[p][1] == "Z"))
            if len(killed) < kills:
                # An OCR child sits at unshare -> [tini ->] worker -> fork server -> child: only a
                # Tesseract whose parent is at that depth is a child's; one already orphaned
                # has PID 1 (tini, or the worker) for a parent, which must not be killed.
                child_depth = 4 if tini else 3
                for pid in tree:
                    ppid, state, comm = procs[pid]
                    if comm == "tesseract" and state != "Z" and tree.get(ppid) == child_depth and ppid not in killed:
                        try:
                            os.kill(ppid, signal.SIGKILL)  # the OCR child, mid-page
                            killed.add(ppid)
                        except ProcessLookupError:
                            pass
                        break
            else:
                left = deps.db.query("select count(*) as n from shell_files where id = any(%s)"
                                     " and status not in ('completed', 'failed')", (ids,))[0]["n"]
                if left == 0:
                    break
            time.sleep(0.05)
        time.sleep(2.0)  # let PID 1 reap what it will
        procs = _procs()
        tree = _descendants(proc.pid, procs)
        zombies = sorted(procs[p][2] for p in tree if procs[p][1] == "Z")
        statuses = {r["status"]: r["n"] for r in deps.db.query(
            "select status, count(*) as n from shell_files where id = any(%s) group by status", (ids,))}
    finally:
        # The namespace's PID 1 (the worker, or tini, which forwards it) gets the SIGTERM:
        # unshare itself does not pass it on.
        for pid, (ppid, _, _) in _procs().items():
            if ppid == proc.pid:
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        deps.db.close()
    return {"init": "tini" if tini else "python as PID 1", "ocr_children_killed": len(killed), "docs": docs,
            "files": statuses, "zombies_at_end": len(zombies), "zombie_commands": sorted(set(zombies)),
            "zombies_max_seen": zombies_max, "elapsed_s": round(time.monotonic() - t0, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50, help="OCR children SIGKILLed under tini")
    parser.add_argument("--docs", type=int, default=30, help="1-page scanned PDFs")
    parser.add_argument("--without-tini-kills", type=int, default=10, help="the same without tini (0: skip)")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("tini"):
        print("needs root, unshare and tini (apt-get install tini)")
        return 2
    stack = start_stack()
    work = Path(tempfile.mkdtemp(prefix="docpipe-zombies-"))
    results = []
    try:
        if args.without_tini_kills:
            print(f"without tini: {args.without_tini_kills} OCR children killed ...", flush=True)
            results.append(run(args.without_tini_kills, max(5, args.without_tini_kills // 2), False, work))
        print(f"with tini: {args.kills} OCR children killed ...", flush=True)
        results.append(run(args.kills, args.docs, True, work))
    finally:
        stack.stop()
        print(f"worker logs in {work}")
    for r in results:
        print(f"{r['init']:16} killed {r['ocr_children_killed']:>3} OCR children; files {r['files']}; "
              f"zombies at the end {r['zombies_at_end']} {r['zombie_commands']} (max seen {r['zombies_max_seen']}); "
              f"{r['elapsed_s']} s")
    path = write_results("zombies", {"runs": results})
    print(f"wrote {path}")
    return 0 if results and results[-1]["zombies_at_end"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
