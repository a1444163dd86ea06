"""Where the OCR path's time goes besides the engine: ``docpipe process`` with timestamps.

``python -m bench._trace process FILE ...`` runs ``shared.cli`` with wrappers around the
seams of one message's life (the parent's receive, child start, reap, delete; the child's
entry, dependencies, handler, database connection and calls, storage, engine, exit), each
writing a JSON line to ``$DOCPIPE_BENCH_TRACE``. The fork server imports this module too (it
is added to the preload), so the children are traced. Nothing here is production code: the
bench reads the lines back (``summarise``) into a table of per-message and fixed costs.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

_PATH = os.environ.get("DOCPIPE_BENCH_TRACE")


def emit(event: str, **fields) -> None:
    if not _PATH:
        return
    line = json.dumps({"e": event, "t": time.time(), "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())  # one write with O_APPEND: lines of several processes never interleave
    finally:
        os.close(fd)


def _cpu() -> dict:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_s": own.ru_utime + own.ru_stime, "children_cpu_s": kids.ru_utime + kids.ru_stime}


def _proc_cpu(pid: int | None) -> dict | None:
    """A process's CPU seconds, its own and its reaped children's, from /proc."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(v) / tick for v in fields[11:15])
    return {"self_s": round(utime + stime, 2), "children_s": round(cutime + cstime, 2)}


def _postmaster(data_dir: Path) -> int | None:
    try:
        return int((Path(data_dir) / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _forkserver_pid() -> int | None:
    from multiprocessing import forkserver

    return getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)


def _timed(owner, name: str, event: str, detail=None) -> None:
    original = getattr(owner, name)
    if getattr(original, "_traced", False):
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        t0 = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            extra = detail(args, kwargs) if detail else {}
            emit(event, t0=t0, ms=(time.time() - t0) * 1000, **extra)

    wrapper._traced = True
    setattr(owner, name, wrapper)


def _patch_common() -> None:
    from shared.adapters.aws import LocalStorage, SqsQueue

    for name in ("receive", "delete", "release", "send", "depth"):
        _timed(SqsQueue, name, f"sqs.{name}", lambda a, k: {"queue": a[1]})
    for name in ("download", "put_bytes"):
        _timed(LocalStorage, name, f"storage.{name}")


def _patch_parent() -> None:
    from shared import submit
    from shared.runtime import localstack, supervisor

    _timed(submit, "provision", "parent.provision")
    _timed(submit, "provision_queues", "parent.provision_queues")
    _timed(submit, "submit", "parent.submit")
    _timed(localstack.LocalStack, "start", "stack.start")
    _timed(localstack.LocalStack, "stop", "stack.stop")
    stop_fork_server = supervisor.stop_fork_server

    def stop_fork_server_traced():
        # The worker is done: the CPU of the stack's Postgres and of the fork server, each with its
        # reaped children (Postgres's backends; the children and their Tesseracts).
        data_dir = Path(os.environ.get("LOCAL_STORAGE_DIR", ".")).parent
        emit("stack.cpu", postgres=_proc_cpu(_postmaster(data_dir)), forkserver=_proc_cpu(_forkserver_pid()), **_cpu())
        stop_fork_server()

    supervisor.stop_fork_server = stop_fork_server_traced
    sup = supervisor.Supervisor
    # The fork server imports this module too, so that the children are traced.
    if hasattr(supervisor, "FORKSERVER_PRELOAD"):
        supervisor.FORKSERVER_PRELOAD.append("bench._trace")
    init = sup.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.isolation == "forkserver":
            self.ctx.set_forkserver_preload(["shared.runtime.child", "shared.runtime.targets", "bench._trace"])
        emit("supervisor.init", **_cpu())

    sup.__init__ = __init__
    start = sup._start

    def _start(self, queue, message):
        t0 = time.time()
        before = set(self.running)
        start(self, queue, message)
        pids = set(self.running) - before
        emit("parent.start", t0=t0, ms=(time.time() - t0) * 1000, queue=queue, child=pids.pop() if pids else None)

    sup._start = _start
    finish = sup._finish

    def _finish(self, run, exitcode):
        t0 = time.time()
        finish(self, run, exitcode)
        emit("parent.finish", t0=t0, ms=(time.time() - t0) * 1000, queue=run.job.queue, child=run.process.pid)

    sup._finish = _finish
    _timed(sup, "_wait", "parent.wait", lambda a, k: {"timeout": a[1], "running": len(a[0].running)})
    _timed(sup, "_idle", "parent.idle")
    _timed(sup, "run", "supervisor.run")


def _patch_child() -> None:
    import importlib

    from shared import bootstrap
    from shared.adapters import postgres, tesseract
    from shared.runtime import child
    from shared.runtime.worker import STAGE_HANDLERS
    from shared.stages import ocr as ocr_stage

    run_job = child.run_job
    if getattr(run_job, "_traced", False):
        return

    def traced_run_job(job):
        emit("child.enter", queue=job.queue)
        try:
            run_job(job)
        finally:
            emit("child.leave", queue=job.queue, **_cpu())

    traced_run_job._traced = True
    child.run_job = traced_run_job
    _timed(bootstrap, "build_deps", "child.build_deps")
    _timed(postgres.PostgresDb, "_connect", "db.connect")
    for name in ("get_shell_file", "pages_without_text", "upsert_text", "try_start_discovery", "record_run",
                 "ensure_not_deleted", "file_exists", "is_deleted"):
        if hasattr(postgres.PostgresDb, name):
            _timed(postgres.PostgresDb, name, f"db.{name}")
    _timed(tesseract.TesseractOcr, "read", "ocr.read")
    _timed(ocr_stage, "run", "stage.ocr")
    for queue in ("ocr", "discover"):
        module = importlib.import_module(STAGE_HANDLERS[queue])
        _timed(module, "lambda_handler", f"handler.{queue}")


def install_parent() -> None:
    _patch_common()
    _patch_parent()


if _PATH and "shared.runtime.child" in __import__("sys").modules:  # the fork server's preload
    _patch_common()
    _patch_child()


def main() -> int:
    import runpy

    install_parent()
    t0 = time.time()
    emit("cli.start")
    # ``docpipe process`` ends with os._exit (no interpreter teardown): the end is emitted then.
    _exit = os._exit

    def exit_now(code: int) -> None:
        emit("cli.end", t0=t0, ms=(time.time() - t0) * 1000, **_cpu())
        _exit(code)

    os._exit = exit_now
    try:
        # ``shared.cli`` as ``__main__``, as ``python -m shared.cli`` runs it: multiprocessing
        # has every child import the main module, and that is part of what is measured.
        runpy.run_module("shared.cli", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code or 0
    finally:
        emit("cli.end", t0=t0, ms=(time.time() - t0) * 1000, **_cpu())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def summarise(path: Path | str) -> dict:
    """The trace of one ``docpipe process`` run as figures: fixed costs (seconds from the
    command's start) and the OCR messages' costs (median ms a message, and seconds in all)."""
    import statistics
    from collections import defaultdict

    events = [json.loads(line) for line in Path(path).read_text().splitlines()]
    by = defaultdict(list)
    for e in events:
        by[e["e"]].append(e)
    t0 = by["cli.start"][0]["t"]
    parent = by["cli.start"][0]["pid"]
    starts = {e["child"]: e for e in by["parent.start"]}
    finishes = {e["child"]: e for e in by["parent.finish"]}
    enter, leave = {}, {}
    for e in by["child.enter"]:
        enter.setdefault(e["pid"], e)
    for e in by["child.leave"]:
        leave[e["pid"]] = e
    per_pid: dict = defaultdict(lambda: defaultdict(float))
    for e in events:
        kind = e["e"].split(".")[0]
        if kind in ("db", "sqs", "storage", "ocr", "handler") and "ms" in e:
            per_pid[e["pid"]][kind] += e["ms"]
        if e["e"] == "db.connect":
            per_pid[e["pid"]]["connect"] += e["ms"]
    ocr = [p for p, s in starts.items() if s["queue"] == "ocr" and p in finishes and p in enter and p in leave]
    handler_start = {e["pid"]: e["t0"] for e in by["handler.ocr"]}
    handler_end = {e["pid"]: e["t"] for e in by["handler.ocr"]}
    rows: dict[str, list[float]] = defaultdict(list)
    for p in ocr:
        s, f = starts[p], finishes[p]
        rows["parent: fork server start() call"].append(s["ms"])
        rows["child: forked, main module imported (start() returned -> run_job)"].append((enter[p]["t"] - s["t"]) * 1000)
        rows["child: build_deps, event (run_job -> handler)"].append((handler_start[p] - enter[p]["t"]) * 1000)
        rows["child: handler, less the engine calls"].append(per_pid[p]["handler"] - per_pid[p]["ocr"])
        rows["  of which database (connect + statements)"].append(per_pid[p]["db"])
        rows["  of which database connect"].append(per_pid[p]["connect"])
        rows["  of which storage download"].append(per_pid[p]["storage"])
        rows["child: exit (handler end -> run_job left)"].append((leave[p]["t"] - handler_end[p]) * 1000)
        rows["parent: reap latency (run_job left -> finish)"].append((f["t0"] - leave[p]["t"]) * 1000)
        rows["parent: finish (result file, temp dir, SQS delete)"].append(f["ms"])
    ordered = sorted(by["parent.start"], key=lambda e: e["t0"])
    for p in ocr:
        later = [s for s in ordered if s["t0"] >= leave[p]["t"]]
        if later and later[0]["queue"] == "ocr":
            rows["slot idle: a child left -> the next start() (exact at concurrency 1)"].append(
                (later[0]["t0"] - leave[p]["t"]) * 1000)
    receives = [e for e in by["sqs.receive"] if e["pid"] == parent]
    reads = sorted(by["ocr.read"], key=lambda e: e["t"])
    pre = next(p for p, s in starts.items() if s["queue"] == "preprocess")
    disc = [p for p, s in starts.items() if s["queue"] == "discover"]
    end = by["cli.end"][0]

    def at(t: float) -> float:
        return round(t - t0, 3)

    return {
        "fixed_s": {
            # Started without waiting, the queues made, then waited for (Postgres): the two calls.
            "stack start (moto server, embedded Postgres)": round(sum(e["ms"] for e in by["stack.start"]) / 1000, 3),
            "queues (while Postgres starts)": round(sum(e["ms"] for e in by["parent.provision_queues"]) / 1000, 3),
            "provision (migrations)": round(by["parent.provision"][0]["ms"] / 1000, 3),
            "submit": round(by["parent.submit"][0]["ms"] / 1000, 3),
            "first child start() (waits for the fork server)": round(ordered[0]["ms"] / 1000, 3),
            "preprocess child (enter -> leave)": round(leave[pre]["t"] - enter[pre]["t"], 3),
            "discover (parent start -> finish)": round(sum(finishes[p]["t"] - starts[p]["t0"] for p in disc), 3),
            "after the worker (reports, stack stop)": round(end["t"] - by["supervisor.run"][0]["t"], 3),
        },
        "timeline_s": {
            "preprocess child started": at(starts[pre]["t"]),
            "preprocess child left": at(leave[pre]["t"]),
            "first OCR read started": at(reads[0]["t0"]),
            "first OCR read done": at(reads[0]["t"]),
            "last OCR read done": at(reads[-1]["t"]),
            "command's work done": at(end["t"]),
        },
        "ocr_messages": len(ocr),
        "ocr_pages": len(reads),
        "engine_calls_s": round(sum(e["ms"] for e in reads) / 1000, 2),
        "per_ocr_message_ms": {k: {"median": round(statistics.median(v), 1), "total_s": round(sum(v) / 1000, 2)}
                               for k, v in rows.items()},
        "parent_receives": {"calls": len(receives), "total_s": round(sum(e["ms"] for e in receives) / 1000, 2),
                            "median_ms": round(statistics.median(e["ms"] for e in receives), 1)},
        "cpu_s": {"parent (moto server thread included)": round(end.get("cpu_s", 0), 2),
                  "parent, to the worker's start": round(by["supervisor.init"][0].get("cpu_s", 0), 2),
                  **({"parent, worker done": round(by["stack.cpu"][0]["cpu_s"], 2)} if by["stack.cpu"] else {}),
                  **({"postgres (its backends included)": _sum_cpu(by["stack.cpu"][0]["postgres"]),
                      "fork server's children (OCR children, their Tesseracts)":
                          (by["stack.cpu"][0]["forkserver"] or {}).get("children_s"),
                      "fork server itself": (by["stack.cpu"][0]["forkserver"] or {}).get("self_s")}
                     if by["stack.cpu"] else {})},
    }


def _sum_cpu(cpu: dict | None) -> float | None:
    return round(cpu["self_s"] + cpu["children_s"], 2) if cpu else None
