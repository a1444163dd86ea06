"""Pass 0.5 at the speed of one model call: a document's windows read side by side (concurrent)
against one after another with a hand-off (sequential), with a model that answers late.

The model is the oracle (``bench/_oracle.py``): an OpenAI-compatible server that answers each
window as a perfect reader would, from the truth of the encounter bench's development packets,
after a set latency (a model's 2 to 10 s). It tests docpipe's windows and reconciliation, not
any model: every figure below is printed with that note.

Parts (``--parts``; by default ``wall`` and ``oracle``, about four minutes; ``--full`` all four,
about twenty):

- ``wall``: Pass 0.5's wall time (``OpenAiEncounters.discover`` through the real ``openai``
  client over HTTP) on documents of 20, 142, 500 and 1,000 pages (clinical development packets
  one after another), at latencies 0, 2, 5 and 10 s, sequential and concurrent
  (LLM_MAX_CONCURRENCY=8, 20 pages a window); what the latency adds, in calls (``(wall(L) -
  wall(0)) / L``); the reconciliation's time; calls in flight at once; input and output tokens
  per page (the oracle counts 4 characters a token), the context page's cost beside the hand-off's.
  Targets: on 142 pages concurrent adds at most 1.5 calls (plus reconciliation); 1,000 pages at
  10 s a call within half of the discover function's ``Timeout`` (template.yaml).
  By default sequential skips 500 and 1,000 pages at 5 and 10 s (8 and 4 minutes of waiting
  each); ``--full`` runs them. The groups run side by side (each document and latency on its
  own, the two modes one after the other), so the default part takes under three minutes.
- ``oracle``: every development packet (clinical and generated), windows of 2 and 20 pages:
  with the perfect reader, the packets returned exactly as their truth; with a noisy one
  (``--noise 0.05``, three times as often at window edges), the bench's scores (boundary F1,
  type, date and identity accuracy) and the fields that differ from the truth, sequential and
  concurrent side by side.
- ``lambda`` (``--full``): a 1,000-page PDF through ``template.yaml`` in its production configuration
  (``docpipe lambda``: EncounterProvider=openai, Textract answering with a recorded response,
  the database through PgBouncer) with the oracle at 10 s a call: the discover invocation's
  REPORT duration against its Timeout, its memory against MemorySize, every window's call.
- ``container`` (``--full``): the same PDF through ``docpipe worker --burst`` (the container's worker, a
  child per message, as render.yaml deploys it: CHILD_MEMORY_MB=400, STAGE_TIMEOUT_S=600) on a
  local stack: the discover stage's duration.

Writes bench/results/discover_windows.json and .png (a run of some parts keeps the others'
figures from the last run, each part with the time it was measured). Timing is latency-driven
(the oracle sleeps), so a busy machine moves the figures little; the reconciliation's
milliseconds are CPU.

    .venv/bin/python bench/discover_windows.py [--full] [--parts wall,oracle,lambda,container]
        [--pages 20 142 500 1000] [--latencies 2 5 10] [--concurrency 8] [--noise 0.05]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import _oracle  # noqa: E402
from bench._stack import RESULTS, write_results  # noqa: E402

MODES = ("sequential", "concurrent")
PARTS = {"wall": "wall", "oracle": "accuracy", "lambda": "lambda", "container": "container"}  # --parts -> key
LAMBDA_LATENCY_S = 10.0


def discover_timeout_s() -> float:
    """The discover function's Timeout, as template.yaml says."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((REPO / "template.yaml").read_text(), Loader=Loader)
    return float(template["Resources"]["DiscoverFunction"]["Properties"]["Timeout"])


class _Timings(logging.Handler):
    """The provider's own log line per discover() call (windows_ms, reconcile_ms), by thread."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_thread: dict[int, dict] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "encounters discovered by the model":
            keys = ("windows_ms", "reconcile_ms", "calls")
            self.by_thread[record.thread] = {k: getattr(record, k, None) for k in keys}


def _provider(base_url: str, mode: str, args, window: int | None = None):
    from shared.encounters.openai import OpenAiEncounters
    from shared.encounters.openai.transport import build_client

    return OpenAiEncounters(
        build_client("oracle", base_url, 120.0), "oracle", pages_per_window=window or args.window,
        window_mode=mode, max_concurrency=args.concurrency,
    )


# --- wall time against pages and latency -----------------------------------------------------------


def run_wall(args) -> dict:
    docs = {n: _oracle.long_document(n) for n in args.pages}
    latencies = [0.0, *args.latencies]
    servers = {lat: _oracle.OracleModel(docs.values(), latency_s=lat).__enter__() for lat in latencies}
    timings = _Timings()
    logger = logging.getLogger("docpipe")
    logger.addHandler(timings)
    rows: list[dict] = []
    lock = threading.Lock()

    def measure(pages: int, latency: float) -> None:
        server, truth = servers[latency], docs[pages]
        for mode in MODES:
            if mode == "sequential" and not args.full and pages > 142 and latency > 2:
                continue
            server.max_in_flight.pop(truth.name, None)
            t0 = time.perf_counter()
            discovery = _provider(server.base_url, mode, args).discover(truth.pages)
            wall = time.perf_counter() - t0
            own = timings.by_thread.get(threading.get_ident(), {})
            row = {
                "pages": pages, "latency_s": latency, "mode": mode, "wall_s": round(wall, 3),
                "windows": own.get("calls"), "in_flight_max": server.max_in_flight.get(truth.name),
                "reconcile_ms": own.get("reconcile_ms"),
                "input_tokens_per_page": round(discovery.input_tokens / pages, 1),
                "output_tokens_per_page": round(discovery.output_tokens / pages, 1),
                "exact": not _oracle.compare(truth, discovery),
            }
            with lock:
                rows.append(row)
                print(f"  {pages:5d} pages  {latency:4.0f} s  {mode:10s}  {wall:7.1f} s  "
                      f"{row['windows']} windows, {row['in_flight_max']} at once", flush=True)

    # The first calls of a process pay for imports and the SDK's schema: not a mode's cost.
    warm = min(docs)
    for mode in MODES:
        _provider(servers[0.0].base_url, mode, args).discover(docs[warm].pages)
    groups = sorted(((n, lat) for n in args.pages for lat in latencies), key=lambda g: -g[0] * (g[1] or 0.1))
    try:
        with concurrent.futures.ThreadPoolExecutor(args.groups_at_once) as pool:
            for future in [pool.submit(measure, *g) for g in groups]:
                future.result()
    finally:
        logger.removeHandler(timings)
        for server in servers.values():
            server.__exit__()
    rows.sort(key=lambda r: (r["pages"], r["latency_s"], r["mode"]))
    base = {(r["pages"], r["mode"]): r["wall_s"] for r in rows if r["latency_s"] == 0}
    for r in rows:
        if r["latency_s"]:
            r["added_calls"] = round((r["wall_s"] - base[(r["pages"], r["mode"])]) / r["latency_s"], 2)
    return {"rows": rows, "window": args.window, "concurrency": args.concurrency}


# --- accuracy with the oracle ----------------------------------------------------------------------


def run_accuracy(args) -> dict:
    from bench import _clinical
    from bench.encounter_families import oldgen as ev
    from shared.models import Manifest

    packets = (_oracle.clinical_packets() if _oracle.clinical_available() else []) + _oracle.generated_packets()
    out: dict = {"packets": len(packets), "noise": args.noise, "edge": 3.0, "runs": []}
    for label, noise in (("perfect", None), ("noisy", _oracle.Noise(rate=args.noise, edge=3.0, seed=args.seed))):
        with _oracle.OracleModel(noise=noise) as oracle:
            for window in (2, 20):
                for mode in MODES:
                    reader = _provider(oracle.base_url, mode, args, window=window)
                    exact = problems = 0
                    clinical, generated = _clinical.Scores(), ev.Counts()
                    for truth in packets:
                        oracle.use(truth)
                        discovery = reader.discover(truth.pages)
                        wrong = _oracle.compare(truth, discovery)
                        exact += not wrong
                        problems += len(wrong)
                        if truth.family == "clinical":
                            manifest = Manifest.build(uuid.uuid4(), truth.page_count, discovery, truth.pages)
                            clinical.add(_clinical.score(truth.packet, discovery, manifest))
                        else:
                            generated.add(ev.score(truth.packet, discovery))
                    c, g = clinical.metrics(), generated.metrics()
                    run = {"oracle": label, "window": window, "mode": mode, "exact": exact, "fields_wrong": problems,
                           "clinical": {k: c[k] for k in ("boundary_f1", "type_accuracy", "date_accuracy",
                                                          "identity_accuracy", "dates_invented")},
                           "generated": {k: g[k] for k in ("boundary_f1", "page_accuracy", "date_accuracy")}}
                    out["runs"].append(run)
                    print(f"  {label:7s} window {window:2d}  {mode:10s}  exact {exact}/{len(packets)}  "
                          f"differences {problems}  clinical F1 {c['boundary_f1']}  dates {c['date_accuracy']}",
                          flush=True)
    return out


# --- the 1,000-page file on Lambda and in the container ----------------------------------------------


def _long_pdf(pages: int, folder: Path) -> tuple[_oracle.Truth, Path]:
    truth = _oracle.long_document(pages, with_pdf=True)
    path = folder / f"record-{pages}.pdf"
    path.write_bytes(truth.pdf)
    return truth, path


def _stored_discovery(db, sfid):
    from shared.models import Discovery

    manifest = db.manifest(sfid)
    if manifest is None:
        return None
    return Discovery(encounters=manifest.encounters, provider="openai", identity_conflict=manifest.identity_conflict)


def run_lambda(args) -> dict:
    from shared.runtime.lambda_local import LambdaLocal
    from shared.runtime.localstack import LOCAL_CREDENTIALS
    from tests.servers import TEXTRACT_FIXTURES, RecordedTextract

    os.environ.update({**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"})
    work = Path(tempfile.mkdtemp(prefix="docpipe-bench-windows-"))
    truth, pdf = _long_pdf(args.long_pages, work)
    recorded = TEXTRACT_FIXTURES / "single-page-1.png.textract.json"
    textract = RecordedTextract(recorded) if recorded.is_file() else None
    with _oracle.OracleModel([truth], latency_s=LAMBDA_LATENCY_S) as oracle:
        if textract is not None:
            textract.__enter__()
        local = LambdaLocal(
            work / "stack", REPO / "template.yaml",
            {"EncounterProvider": "openai", "PreprocessMaxConcurrency": "2", "OcrMaxConcurrency": "2",
             "DiscoverMaxConcurrency": "2"},
            openai_base_url=oracle.base_url, textract_endpoint_url=textract.url if textract else None,
            logs_dir=work / "logs", report=None, concurrency_cap=2,
        )
        t0 = time.monotonic()
        try:
            local.start()
            ids = local.submit([pdf], uuid.UUID("00000000-0000-4000-8000-0000000bec24"))
            finished = local.wait(ids, args.timeout)
            wall = time.monotonic() - t0
            local.emulator.stop()
            db = local.uploader().db
            status = db.get_shell_file(ids[0]).status.value
            discovery = _stored_discovery(db, ids[0])
            invocations = [i for i in local.emulator.invocations if i.function == "DiscoverFunction"]
        finally:
            local.stop()
            if textract is not None:
                textract.__exit__()
        calls = oracle.calls_of(truth.name)
        in_flight = oracle.max_in_flight.get(truth.name)
    log_file = work / "logs" / "DiscoverFunction.log"
    log = log_file.read_text() if log_file.exists() else ""
    done = [i for i in invocations if i.status == "ok"]
    out = {
        "pages": args.long_pages, "latency_s": LAMBDA_LATENCY_S, "finished": finished, "status": status,
        "wall_s": round(wall, 1), "discover_invocations": len(invocations),
        "discover_duration_s": round(done[-1].duration_ms / 1000, 2) if done else None,
        "discover_max_memory_mb": round(max((i.max_memory_mb for i in invocations), default=0), 1),
        "memory_size_mb": invocations[0].memory_mb if invocations else None,
        "report_line": done[-1].report_line() if done else None,
        "model_calls": len(calls), "in_flight_max": in_flight,
        "windows_in_log": log.count('"message":"model answered"'),
        "exact": discovery is not None and not _oracle.compare(truth, discovery),
        "differences": _oracle.compare(truth, discovery)[:10] if discovery is not None else ["no manifest"],
    }
    print(f"  lambda: {out['status']}, discover {out['discover_duration_s']} s in "
          f"{out['discover_invocations']} invocation(s), {out['model_calls']} calls ({in_flight} at once), "
          f"{out['discover_max_memory_mb']} of {out['memory_size_mb']} MB, exact {out['exact']}", flush=True)
    return out


def run_container(args) -> dict:
    from bench._stack import new_prefix, stack_deps, start_stack
    from shared.adapters.postgres import PostgresDb

    work = Path(tempfile.mkdtemp(prefix="docpipe-bench-windows-"))
    truth, pdf = _long_pdf(args.long_pages, work)
    stack = start_stack(work / "stack")
    try:
        prefix = new_prefix("w")
        stack_deps(prefix)  # its queues
        with _oracle.OracleModel([truth], latency_s=LAMBDA_LATENCY_S) as oracle:
            # The worker as render.yaml deploys it: one child at a time, 400 MB each, 600 s each.
            env = {**os.environ, **stack.env(), "QUEUE_PREFIX": prefix, "ENCOUNTER_PROVIDER": "openai",
                   "OPENAI_BASE_URL": oracle.base_url, "OPENAI_API_KEY": "oracle", "POWERTOOLS_LOG_LEVEL": "WARNING",
                   "WORKER_CONCURRENCY": "1", "CHILD_MEMORY_MB": "400", "STAGE_TIMEOUT_S": "600"}
            cli = [sys.executable, "-m", "shared.cli"]
            submitted = subprocess.run([*cli, "submit", str(pdf), "--patient-id", str(uuid.uuid4())], env=env,
                                       cwd=REPO, capture_output=True, text=True, check=False)
            if submitted.returncode:
                raise RuntimeError("docpipe submit failed: " + submitted.stderr[-2000:])
            sfid = uuid.UUID(submitted.stdout.strip())
            t0 = time.monotonic()
            subprocess.run([*cli, "worker", "--burst"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                           stderr=open(work / "worker.log", "w"), timeout=args.timeout, check=False)  # noqa: SIM115
            wall = time.monotonic() - t0
            calls = oracle.calls_of(truth.name)
            in_flight = oracle.max_in_flight.get(truth.name)
        db = PostgresDb(stack.database_url)
        runs = db.query("select stage, outcome, duration_ms from pipeline_runs where shell_file_id = %s"
                        " order by started_at", (sfid,))
        status = db.get_shell_file(sfid).status.value
        discovery = _stored_discovery(db, sfid)
    finally:
        stack.stop()
    discover_runs = [r for r in runs if r["stage"] == "discover"]
    ok = [r for r in discover_runs if r["outcome"] == "ok"] or discover_runs
    from shared.settings import Settings

    out = {
        "pages": args.long_pages, "latency_s": LAMBDA_LATENCY_S, "status": status, "wall_s": round(wall, 1),
        "discover_runs": len(discover_runs),
        "discover_duration_s": round(float(ok[-1]["duration_ms"]) / 1000, 2) if ok else None,
        "stage_timeout_s": Settings().stage_timeout_s, "model_calls": len(calls), "in_flight_max": in_flight,
        "exact": discovery is not None and not _oracle.compare(truth, discovery),
        "differences": _oracle.compare(truth, discovery)[:10] if discovery is not None else ["no manifest"],
    }
    print(f"  container: {out['status']}, discover {out['discover_duration_s']} s of STAGE_TIMEOUT_S "
          f"{out['stage_timeout_s']:.0f}, {out['model_calls']} calls ({in_flight} at once), exact {out['exact']}",
          flush=True)
    return out


# --- report --------------------------------------------------------------------------------------


def targets(report: dict) -> dict:
    out = {}
    timeout = report["discover_timeout_s"]
    rows = report.get("wall", {}).get("rows", [])
    conc142 = [r for r in rows if r["pages"] == 142 and r["mode"] == "concurrent" and r["latency_s"]]
    if conc142:
        worst = max(r["added_calls"] for r in conc142)
        out["concurrent_142_pages_added_calls_max"] = worst
        out["concurrent_142_pages_reconcile_ms_max"] = max(r["reconcile_ms"] or 0 for r in conc142)
        out["concurrent_142_pages_within_1_5_calls"] = worst <= 1.5
    big = [r for r in rows if r["pages"] == 1000 and r["mode"] == "concurrent" and r["latency_s"] == 10]
    if big:
        out["concurrent_1000_pages_10_s_wall_s"] = big[0]["wall_s"]
        out["concurrent_1000_pages_within_half_timeout"] = big[0]["wall_s"] <= timeout / 2
    for where in ("lambda", "container"):
        if report.get(where) and report[where].get("discover_duration_s") is not None:
            out[f"{where}_1000_pages_discover_s"] = report[where]["discover_duration_s"]
            out[f"{where}_within_half_timeout"] = report[where]["discover_duration_s"] <= timeout / 2
            out[f"{where}_completed_with_the_truth"] = report[where]["status"] == "completed" and report[where]["exact"]
    return out


def print_tables(report: dict) -> None:
    print()
    print(_oracle.ORACLE_NOTE)
    rows = report.get("wall", {}).get("rows", [])
    if rows:
        print(f"\nPass 0.5 wall time, {report['wall']['window']} pages a window, "
              f"LLM_MAX_CONCURRENCY={report['wall']['concurrency']}")
        print("pages  latency  mode        wall s  added calls  windows  at once  reconcile ms  in tok/page"
              "  out tok/page  truth")
        for r in rows:
            print(f"{r['pages']:5d}  {r['latency_s']:5.0f} s  {r['mode']:10s} {r['wall_s']:7.1f}  "
                  f"{r.get('added_calls', 0):11.2f}  {r['windows'] or 0:7d}  {r['in_flight_max'] or 0:7d}  "
                  f"{r['reconcile_ms'] or 0:12.1f}  {r['input_tokens_per_page']:11.1f}  "
                  f"{r['output_tokens_per_page']:12.1f}"
                  f"  {'exact' if r['exact'] else 'DIFFERS'}")
    for run in report.get("accuracy", {}).get("runs", []):
        if run is report["accuracy"]["runs"][0]:
            accuracy = report["accuracy"]
            print(f"\naccuracy on {accuracy['packets']} development packets (noise {accuracy['noise']},"
                  " 3x at window edges)")
        print(f"  {run['oracle']:7s} window {run['window']:2d}  {run['mode']:10s} exact {run['exact']:3d}  "
              f"differences {run['fields_wrong']:4d}  clinical {run['clinical']}  generated {run['generated']}")
    for where in ("lambda", "container"):
        if report.get(where):
            print(f"\n{where}: {report[where]}")
    print(f"\ndiscover Timeout {report['discover_timeout_s']:.0f} s; targets: {report['targets']}")
    print(_oracle.ORACLE_NOTE)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    rows = report.get("wall", {}).get("rows", [])
    colours = {0.0: "grey", 2.0: "tab:green", 5.0: "tab:orange", 10.0: "tab:red"}
    ax = axes[0]
    for latency in sorted({r["latency_s"] for r in rows}):
        for mode, style in (("sequential", "--"), ("concurrent", "-")):
            pts = sorted((r["pages"], r["wall_s"]) for r in rows if r["latency_s"] == latency and r["mode"] == mode)
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=colours.get(latency, "black"),
                        label=f"{mode}, {latency:.0f} s a call")
    timeout = report["discover_timeout_s"]
    ax.axhline(timeout / 2, color="black", lw=0.8, ls=":", label=f"half the discover Timeout ({timeout / 2:.0f} s)")
    for where, marker, colour, dx in (("lambda", "s", "tab:blue", -25), ("container", "^", "tab:purple", 25)):
        if report.get(where, {}).get("discover_duration_s") is not None:
            ax.plot([report[where]["pages"] + dx], [report[where]["discover_duration_s"]], marker, color=colour,
                    markersize=9, label=f"{where}: discover, {report[where]['pages']:,} pages, 10 s a call")
    ax.set_xlabel("pages")
    ax.set_ylabel("Pass 0.5 wall time, s")
    ax.set_yscale("log")
    ax.set_title("wall time: sequential (dashed) against concurrent")
    ax.legend(fontsize=7)

    ax = axes[1]
    pages = sorted({r["pages"] for r in rows if r["latency_s"] == 0})
    width = 0.38
    for k, mode in enumerate(MODES):
        vals = [next((r["input_tokens_per_page"] + r["output_tokens_per_page"] for r in rows
                      if r["pages"] == p and r["mode"] == mode and r["latency_s"] == 0), 0) for p in pages]
        ax.bar([i + (k - 0.5) * width for i in range(len(pages))], vals, width, label=mode)
    ax.set_xticks(range(len(pages)), [str(p) for p in pages])
    ax.set_xlabel("pages")
    ax.set_ylabel("tokens per page (in + out, 4 chars a token)")
    ax.set_title("the context page's cost against the hand-off's")
    ax.legend(fontsize=8)

    ax = axes[2]
    runs = report.get("accuracy", {}).get("runs", [])
    labels = [f"{r['oracle']}\nw{r['window']}" for r in runs if r["mode"] == "sequential"]
    for k, mode in enumerate(MODES):
        vals = [r["clinical"]["boundary_f1"] if r["clinical"] else r["generated"]["boundary_f1"]
                for r in runs if r["mode"] == mode]
        ax.bar([i + (k - 0.5) * width for i in range(len(vals))], vals, width, label=mode)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("boundary F1 (clinical development packets)")
    ax.set_title("accuracy with the oracle: concurrent against sequential")
    ax.legend(fontsize=8)
    fig.suptitle("Pass 0.5 windows side by side. " + _oracle.ORACLE_NOTE, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="sequential at 500 and 1,000 pages at every "
                        "latency too, and the lambda and container parts")
    parser.add_argument("--parts", default=None,
                        help="a comma-separated subset of " + ",".join(PARTS) + " (default: wall,oracle; --full: all)")
    parser.add_argument("--pages", type=int, nargs="+", default=[20, 142, 500, 1000])
    parser.add_argument("--latencies", type=float, nargs="+", default=[2.0, 5.0, 10.0])
    parser.add_argument("--window", type=int, default=20, help="LLM_PAGES_PER_WINDOW")
    parser.add_argument("--concurrency", type=int, default=8, help="LLM_MAX_CONCURRENCY")
    parser.add_argument("--groups-at-once", type=int, default=8, help="(pages, latency) groups measured side by side")
    parser.add_argument("--noise", type=float, default=0.05, help="the noisy oracle's rate (3x at window edges)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--long-pages", type=int, default=1000, help="the Lambda and container document")
    parser.add_argument("--timeout", type=float, default=1800.0, help="for the Lambda and container runs")
    args = parser.parse_args()
    everything = {"wall", "oracle", *(("lambda", "container") if args.full else ())}
    parts = set(args.parts.split(",")) if args.parts else everything
    from shared.observability import logger as _  # noqa: F401 - its handler, held at WARNING below

    docpipe_log = logging.getLogger("docpipe")
    docpipe_log.setLevel(logging.INFO)  # the provider's timing line reaches _Timings ...
    for handler in docpipe_log.handlers:
        handler.setLevel(logging.WARNING)  # ... not stderr, a line per window

    print(_oracle.ORACLE_NOTE, flush=True)
    # A run of some parts keeps the figures of the others from the last run (each part says when).
    previous = RESULTS / "discover_windows.json"
    report: dict = json.loads(previous.read_text()) if previous.exists() and parts != set(PARTS) else {}
    report.update({"note": _oracle.ORACLE_NOTE, "discover_timeout_s": discover_timeout_s()})
    started = time.monotonic()
    for part, title, run in (("wall", "wall time", run_wall), ("oracle", "accuracy", run_accuracy),
                             ("lambda", "lambda (docpipe lambda, production configuration)", run_lambda),
                             ("container", "container (docpipe worker --burst)", run_container)):
        if part in parts:
            print(f"{title}:", flush=True)
            report[PARTS[part]] = {**run(args), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "full": args.full}
    report["targets"] = targets(report)
    report["bench_s"] = round(time.monotonic() - started, 1)
    print_tables(report)
    path = write_results("discover_windows", report)
    plot(report, RESULTS / "discover_windows.png")
    print(f"wrote {path} and {RESULTS / 'discover_windows.png'} ({report['bench_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
