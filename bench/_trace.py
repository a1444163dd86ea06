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
    _timed(submit, "submit", "parent.submit")
    _timed(localstack.LocalStack, "start", "stack.start")
    _timed(localstack.LocalStack, "stop", "stack.stop")
    sup = supervisor.Supervisor
    init = sup.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if self.isolation == "forkserver":
            self.ctx.set_forkserver_preload(["shared.runtime.child", "shared.runtime.targets", "bench._trace"])
        emit("supervisor.init")

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
