"""Chaos: N documents through `docpipe worker --concurrency 2` while things break.

While the worker runs, the bench
  - SIGKILLs about 10% of the worker's per-message children, each at a random point of its run
    (it aims at 12% of the children it sees: the shortest end before it can see them);
  - "restarts the SQS endpoint" once: moto keeps queues in memory, so a real restart of moto
    would wipe every message (a real SQS never loses state on a blip). The worker reaches SQS
    through a TCP proxy (bench/_chaos.py) instead, and the restart is modelled as an outage of
    that endpoint: every open connection dropped, new ones refused, for OUTAGE_S seconds;
  - restarts Postgres once, for real: `pg_ctl stop -m fast` on the embedded server (every
    connection dropped), PG_OUTAGE_S seconds down, `pg_ctl start` (data kept). PG_OUTAGE_S is
    four times the whole retry budget docpipe had before issue 12 (five deliveries at 2, 8,
    32, 128 s: 170 s), compressed as the bench compresses time (x 1/20: 34 s); the budget the
    worker has now (RETRY_BUDGET_S, an hour, compressed to 180 s) rides it out;
  - injects stale duplicate dead letters: for files already past a stage, a copy of that
    stage's message straight into its DLQ (the stages send duplicates on purpose); none of
    those files may end failed;
  - restarts PgBouncer, when the caller passes a ``pgbouncer_restart`` hook (the worker
    then reaches Postgres through it); without one the fault is reported as skipped;
  - fails storage (STORAGE_BACKEND=s3 on moto, through a second proxy) for OUTAGE_S seconds the
    same way: every adapter call in that window is a real connection failure.
Each fault fires when a given share of the documents has ended (15%, 30%, 40%, 55%, 65%).

Documents are copies of a few templates (2-page text PDFs and 1-page scanned PDFs), so a clean
run of each template first gives the row counts every completed copy must match in
shell_file_pages, ocr_text_extractions, healthcare_encounters and shell_file_manifests.

The ledger: submitted, completed, failed (by error code), duplicates (a completed file whose
counts differ from its template's clean run, or with more encounter rows than its manifest
lists), lost (not terminal and no message left anywhere), stuck (not terminal at the end),
dead letters whose file is not failed, children killed, outages injected, elapsed. Prints it,
writes bench/results/chaos.{json,png} (a timeline of faults and completions).

    python bench/chaos.py [--n 200] [--seed 7] [--kill-fraction 0.12] [--outage-s 5] [--pg-outage-s 34]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._chaos import ChildKiller, MotoServer, Postgres, TcpProxy  # noqa: E402
from bench._stack import REPO, RESULTS, new_prefix, scanned_pdf, text_pdf, write_results  # noqa: E402

TABLES = ("shell_file_pages", "ocr_text_extractions", "healthcare_encounters", "shell_file_manifests")
STAGE_QUEUES = ("preprocess", "ocr", "discover")
ALL_QUEUES = (*STAGE_QUEUES, *(f"{q}-dlq" for q in STAGE_QUEUES))
TERMINAL = ("completed", "failed")
FAULTS = (("sqs_outage", 0.15), ("stale_dead_letters", 0.30), ("postgres_restart", 0.40),
          ("pgbouncer_restart", 0.55), ("storage_outage", 0.65))

# Time compression: the bench's first redelivery wait over production's (0.1 s / 2 s). Every
# retry figure is production's times this: the budget (an hour -> 180 s), the longest wait.
COMPRESS = 0.05
RETRY_DELAY_S = 2.0 * COMPRESS
RETRY_BUDGET_S = 3600 * COMPRESS
RETRY_MAX_DELAY_S = 900 * COMPRESS
# The whole retry budget before issue 12: five deliveries, waits of 2, 8, 32 and 128 s.
OLD_BUDGET_S = 2 + 8 + 32 + 128
PG_OUTAGE_S = 4 * OLD_BUDGET_S * COMPRESS


def _settings(db_url: str, endpoint: str, prefix: str, bucket: str):
    from shared.settings import Settings

    return Settings(
        database_url=db_url, aws_endpoint_url=endpoint, storage_backend="s3", storage_bucket=bucket,
        queue_prefix=prefix, visibility_timeout_s=30, retry_delay_s=RETRY_DELAY_S, retry_budget_s=RETRY_BUDGET_S,
        retry_max_delay_s=RETRY_MAX_DELAY_S,
    )


def _deps(settings):
    from shared.bootstrap import build_deps
    from shared.submit import provision

    deps = build_deps(settings)
    provision(deps)
    return deps


def _worker_env(settings, sqs_url: str, s3_url: str, tmp: Path) -> dict:
    from shared.runtime.localstack import LOCAL_CREDENTIALS

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SQS_", "S3_", "DATABASE_"))}
    env.update({
        **LOCAL_CREDENTIALS, "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "AWS_ENDPOINT_URL": sqs_url, "SQS_ENDPOINT_URL": sqs_url, "S3_ENDPOINT_URL": s3_url,
        "STORAGE_BACKEND": "s3", "STORAGE_BUCKET": settings.storage_bucket, "QUEUE_PREFIX": settings.queue_prefix,
        "VISIBILITY_TIMEOUT_S": "30", "WORKER_POLL_WAIT_S": "1",
        # Time compressed like the outages (seconds, not minutes): redeliveries after 1, 1, 2,
        # 7, 26, 45, 45 ... s instead of 2, 8, 32, 128, 512, 900, 900 ... s, for a budget of
        # 180 s instead of an hour; the receive count derives from them, as in production.
        "RETRY_DELAY_S": str(RETRY_DELAY_S), "RETRY_BUDGET_S": str(RETRY_BUDGET_S),
        "RETRY_MAX_DELAY_S": str(RETRY_MAX_DELAY_S),
        # A discover child killed mid-call holds its lease until it expires: compressed too.
        "DISCOVERY_LEASE_S": str(660 * COMPRESS),
        "STAGE_TIMEOUT_S": "120", "WORKER_TMP_DIR": str(tmp), "SHUTDOWN_GRACE_S": "20",
        "POWERTOOLS_LOG_LEVEL": "INFO", "POWERTOOLS_METRICS_DISABLED": "true",
    })
    return env


def _worker(env: dict, log, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shared.cli", "worker", "--concurrency", "2", *args],
                            cwd=REPO, env=env, stdout=log, stderr=log)


def _counts(db, ids: list) -> dict:
    """shell_file_id -> {table: rows}, plus the number of encounters each manifest lists."""
    out: dict = collections.defaultdict(lambda: {t: 0 for t in (*TABLES, "manifest_encounters")})
    for table in TABLES:
        for r in db.query(f"select shell_file_id, count(*) as n from {table} where shell_file_id = any(%s)"
                          " group by shell_file_id", (ids,)):
            out[r["shell_file_id"]][table] = r["n"]
    for r in db.query("select shell_file_id, jsonb_array_length(manifest->'encounters') as n"
                      " from shell_file_manifests where shell_file_id = any(%s)", (ids,)):
        out[r["shell_file_id"]]["manifest_encounters"] = r["n"]
    return out


def templates(work: Path, text: int, scanned: int) -> list[tuple[str, Path]]:
    out = [(f"text{i}", text_pdf(work / f"text{i}.pdf", 2, seed=i)) for i in range(text)]
    out += [(f"scan{i}", scanned_pdf(work / f"scan{i}.pdf", 1, seed=100 + i)) for i in range(scanned)]
    return out


def plan(n: int, tmpl: list[tuple[str, Path]], scanned_every: int) -> list[tuple[str, Path]]:
    """n documents: every ``scanned_every``-th a scanned template, the rest text, round robin."""
    texts = [t for t in tmpl if t[0].startswith("text")]
    scans = [t for t in tmpl if t[0].startswith("scan")]
    docs = []
    for i in range(n):
        if scans and i % scanned_every == scanned_every - 1:
            docs.append(scans[(i // scanned_every) % len(scans)])
        else:
            docs.append(texts[i % len(texts)])
    return docs


def clean_run(pg_url: str, moto_url: str, tmpl: list[tuple[str, Path]], work: Path, bucket: str) -> dict:
    """Each template once, no faults: the row counts per table every copy must match."""
    from shared.submit import submit

    settings = _settings(pg_url, moto_url, new_prefix("clean"), bucket)
    deps = _deps(settings)
    ids = {name: submit(deps, path, uuid.uuid4()) for name, path in tmpl}
    with (work / "clean.log").open("w") as log:
        proc = _worker(_worker_env(settings, moto_url, moto_url, work), log, "--burst")
        proc.wait(timeout=600)
    statuses = {r["id"]: r["status"] for r in deps.db.query(
        "select id, status from shell_files where id = any(%s)", (list(ids.values()),))}
    bad = {name: statuses.get(i) for name, i in ids.items() if statuses.get(i) != "completed"}
    if bad:
        raise RuntimeError(f"the clean run did not complete every template: {bad}")
    counts = _counts(deps.db, list(ids.values()))
    deps.db.close()
    return {name: dict(counts[i]) for name, i in ids.items()}


def _dead_letters(log_path: Path) -> list[dict]:
    """The failures handler's 'dead letter recorded' lines: shell_file_id, error_code, marked."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if '"dead letter' not in line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        out.append({"shell_file_id": rec.get("shell_file_id"), "error_code": rec.get("error_code"),
                    "marked": rec.get("marked"), "message": rec.get("message")})
    return out


def _children(log_path: Path) -> collections.Counter:
    outcomes: collections.Counter = collections.Counter()
    for line in log_path.read_text(errors="replace").splitlines():
        if '"child finished"' in line:
            try:
                outcomes[json.loads(line).get("outcome")] += 1
            except ValueError:
                pass
    return outcomes


def inject_stale_dead_letters(deps, ids: list, rng: random.Random, share: float = 0.25) -> list:
    """For about ``share`` of the files already past a stage, put a copy of that stage's
    message straight into its DLQ, as a duplicate that exhausted its deliveries would land
    there; return the files they name."""
    rows = deps.db.query("select id, status from shell_files where id = any(%s)", (ids,))
    past = {"preprocess": ("ocr", "discovering", "completed"), "ocr": ("discovering", "completed"),
            "discover": ("completed",)}
    hit = []
    for r in rows:
        if rng.random() >= share:
            continue
        for stage, statuses in past.items():
            if r["status"] in statuses:
                body = {"shell_file_id": str(r["id"]), **({"page_numbers": [1]} if stage == "ocr" else {})}
                deps.queue.send_raw(f"{stage}-dlq", json.dumps(body))
        if r["status"] in past["preprocess"]:
            hit.append(r["id"])
    return hit


def run_chaos(n: int = 200, seed: int = 7, kill_fraction: float = 0.12, outage_s: float = 5.0,
              text_templates: int = 5, scanned_templates: int = 3, scanned_every: int = 4,
              deadline_s: float = 1500.0, say=print, pg_outage_s: float = PG_OUTAGE_S,
              pgbouncer_restart=None, pooler: bool = True) -> dict:
    """Run the whole bench on a fresh local stack; return the ledger (JSON-serialisable).

    With ``pooler`` (and Debian's pgbouncer installed) the worker reaches Postgres through
    PgBouncer in transaction mode, as a deployment reaches Supabase's pooler, and the
    ``pgbouncer_restart`` fault restarts it."""
    from shared.runtime.localstack import LOCAL_CREDENTIALS
    from shared.submit import submit

    for key, value in {**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(key, value)
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="docpipe-chaos-"))
    moto = MotoServer().start()
    pg = None
    sqs_proxy = s3_proxy = None
    worker = None
    bouncer = None
    try:
        pg = Postgres(work / "pg")
        from shared.runtime import pgbouncer as pgb

        if pooler and pgb.available():
            bouncer = pgb.PgBouncer(pg.url, work / "pgbouncer").start()
            pgbouncer_restart = pgbouncer_restart or bouncer.restart
        sqs_proxy = TcpProxy(moto.port, "sqs").start()
        s3_proxy = TcpProxy(moto.port, "s3").start()
        bucket = f"chaos-{uuid.uuid4().hex[:8]}"
        tmpl = templates(work, text_templates, scanned_templates)
        say(f"clean run of {len(tmpl)} templates ...")
        reference = clean_run(pg.url, moto.url, tmpl, work, bucket)

        # The bench talks to moto directly; only the worker goes through the proxies.
        settings = _settings(pg.url, moto.url, new_prefix("chaos"), bucket)
        deps = _deps(settings)
        docs = plan(n, tmpl, scanned_every)
        patient = uuid.uuid4()
        ids = [submit(deps, path, patient) for _, path in docs]
        template_of = {i: name for i, (name, _) in zip(ids, docs)}
        say(f"submitted {len(ids)} documents; starting the worker under chaos ...")

        log_path = work / "worker.log"
        log = log_path.open("w")
        t0 = time.monotonic()
        events: list[dict] = []
        series: list[tuple[float, int, int]] = []

        def event(kind: str, **extra) -> None:
            events.append({"t": round(time.monotonic() - t0, 2), "kind": kind, **extra})

        worker_env = _worker_env(settings, sqs_proxy.url, s3_proxy.url, work)
        if bouncer is not None:
            worker_env["DATABASE_URL"] = bouncer.url  # the bench itself reads Postgres directly
        worker = _worker(worker_env, log)
        killer = ChildKiller(worker.pid, kill_fraction, rng, on_kill=lambda pid: event("kill"))
        killer.start()

        stale: list = []

        def fault(kind: str) -> None:
            if kind == "pgbouncer_restart" and pgbouncer_restart is None:
                event("pgbouncer_restart_skipped")  # the hook: a PgBouncer in front of Postgres
                return
            event(f"{kind}_start")
            if kind == "sqs_outage":
                sqs_proxy.outage(outage_s)
            elif kind == "storage_outage":
                s3_proxy.outage(outage_s)
            elif kind == "stale_dead_letters":
                stale.extend(inject_stale_dead_letters(deps, ids, rng))
                event("stale_dead_letters_sent", files=len(stale))
            elif kind == "pgbouncer_restart":
                pgbouncer_restart()
            else:
                took = pg.restart(pg_outage_s)
                event("postgres_restart_took", seconds=round(took, 2))
            event(f"{kind}_end")

        fired: list[threading.Thread] = []
        pending = list(FAULTS)
        deadline = t0 + deadline_s
        drained = False
        while time.monotonic() < deadline:
            try:
                rows = deps.db.query("select status, count(*) as n from shell_files where id = any(%s)"
                                     " group by status", (ids,))
            except Exception:  # noqa: BLE001 - Postgres is restarting: the monitor waits too
                time.sleep(0.5)
                continue
            by = {r["status"]: r["n"] for r in rows}
            done, failed = by.get("completed", 0), by.get("failed", 0)
            series.append((round(time.monotonic() - t0, 2), done, failed))
            while pending and (done + failed) >= pending[0][1] * len(ids):
                kind, _ = pending.pop(0)
                thread = threading.Thread(target=fault, args=(kind,), daemon=True)
                thread.start()
                fired.append(thread)
            if worker.poll() is not None:
                event("worker_exit", code=worker.returncode)
                break
            if not pending and all(not t.is_alive() for t in fired) and done + failed == len(ids):
                try:
                    if all(sum(deps.queue.depth(q)) == 0 for q in ALL_QUEUES):
                        drained = True
                        break
                except Exception:  # noqa: BLE001
                    pass
            time.sleep(0.5)
        elapsed = time.monotonic() - t0
        killer.stop()
        for thread in fired:
            thread.join(timeout=90)
        worker_alive_at_end = worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        try:
            worker_code = worker.wait(timeout=90)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker_code = worker.wait()
        log.close()

        ledger = _ledger(deps, ids, template_of, reference, log_path, killer, events, elapsed, drained)
        failed_now = {r["id"] for r in deps.db.query(
            "select id from shell_files where id = any(%s) and status = 'failed'", (ids,))}
        ledger.update({
            "stale_dead_letter_files": len(stale),
            "wrongly_failed": sum(1 for i in stale if i in failed_now),
            "pg_outage_s": round(pg_outage_s, 1), "old_retry_budget_s_compressed": round(OLD_BUDGET_S * COMPRESS, 1),
            "retry_budget_s_compressed": RETRY_BUDGET_S,
            "faults_skipped": [e["kind"].removesuffix("_skipped") for e in events if e["kind"].endswith("_skipped")],
            "n": n, "seed": seed, "kill_fraction": kill_fraction, "outage_s": outage_s,
            "worker_alive_at_end": worker_alive_at_end, "worker_exit_code": worker_code,
            "reference_counts": reference, "events": events, "series": series,
            "sqs_model": "moto's server behind a TCP proxy; the 'restart' is a proxy outage (connections "
                         "dropped and refused), because moto keeps queues in memory",
        })
        if ledger["duplicates"] or ledger["stuck"] or ledger["untyped_failures"]:
            ledger["worker_log_tail"] = [line for line in log_path.read_text(errors="replace").splitlines()
                                         if '"level":"ERROR"' in line][-40:]
        deps.db.close()
        return ledger
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        for proxy in (sqs_proxy, s3_proxy):
            if proxy is not None:
                proxy.stop()
        moto.stop()
        if bouncer is not None:
            bouncer.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def _ledger(deps, ids, template_of, reference, log_path, killer, events, elapsed, drained) -> dict:
    rows = {r["id"]: r for r in deps.db.query(
        "select id, status, error_code from shell_files where id = any(%s)", (ids,))}
    counts = _counts(deps.db, ids)
    completed = [i for i in ids if rows[i]["status"] == "completed"]
    failed = [i for i in ids if rows[i]["status"] == "failed"]
    stuck = [i for i in ids if rows[i]["status"] not in TERMINAL]
    duplicates = []
    for i in completed:
        got, want = dict(counts[i]), reference[template_of[i]]
        if got != want or got["healthcare_encounters"] > got["manifest_encounters"]:
            duplicates.append({"shell_file_id": str(i), "template": template_of[i], "got": got, "want": want})
    depths = {q: dict(zip(("visible", "in_flight"), deps.queue.depth(q))) for q in ALL_QUEUES}
    messages_left = sum(d["visible"] + d["in_flight"] for d in depths.values())
    # A file with no terminal row and no message anywhere can never finish: lost.
    lost = [i for i in stuck if messages_left == 0]
    dead = _dead_letters(log_path)
    status_of = {str(i): rows[i]["status"] for i in ids}
    # A dead letter that failed its file must leave it failed (a stale one fails nothing).
    dlq_without_failed = [d for d in dead if d["marked"] and status_of.get(d["shell_file_id"]) != "failed"]
    # DLQ messages left at the end whose file is not failed (the worker consumes DLQs: none).
    left_in_dlq = sum(depths[q]["visible"] + depths[q]["in_flight"] for q in ALL_QUEUES if q.endswith("-dlq"))
    children = _children(log_path)
    runs = deps.db.query("select error_code, count(*) as n from pipeline_runs where shell_file_id = any(%s)"
                         " and error_code is not null group by error_code", (ids,))
    outages = [e["kind"].removesuffix("_start") for e in events if e["kind"].endswith("_start")]
    return {
        "submitted": len(ids),
        "completed": len(completed),
        "failed": len(failed),
        "failed_by_code": dict(collections.Counter(rows[i]["error_code"] or "none" for i in failed)),
        "untyped_failures": sum(1 for i in failed if not rows[i]["error_code"]),
        "duplicates": len(duplicates),
        "duplicate_files": duplicates[:20],
        "lost": len(lost),
        "stuck": len(stuck),
        "stuck_statuses": dict(collections.Counter(rows[i]["status"] for i in stuck)),
        "drained": drained,
        "messages_left": messages_left,
        "queue_depths_at_end": depths,
        "dead_letters": len(dead),
        "dead_letters_by_code": dict(collections.Counter(d["error_code"] for d in dead)),
        "dlq_without_failed_row": len(dlq_without_failed) + left_in_dlq,
        "children_started": sum(children.values()),
        "children_seen_by_killer": len(killer.seen),
        "children_killed": len(killer.killed),
        "child_outcomes": dict(children),
        "stage_run_error_codes": {r["error_code"]: r["n"] for r in runs},
        "outages_injected": outages,
        "elapsed_s": round(elapsed, 1),
    }


def check(ledger: dict) -> list[str]:
    """The invariants, as a list of what broke (empty: all hold)."""
    broken = []
    if ledger["submitted"] != ledger["completed"] + ledger["failed"]:
        broken.append("submitted != completed + failed")
    for key in ("duplicates", "lost", "stuck", "untyped_failures", "dlq_without_failed_row", "messages_left"):
        if ledger[key]:
            broken.append(f"{key} = {ledger[key]}")
    if len(ledger["outages_injected"]) + len(ledger.get("faults_skipped", [])) != len(FAULTS):
        broken.append(f"faults injected: {ledger['outages_injected']}")
    if ledger.get("wrongly_failed"):
        broken.append(f"wrongly_failed = {ledger['wrongly_failed']} (by stale dead letters)")
    return broken


def format_ledger(ledger: dict) -> str:
    lines = [
        f"submitted            {ledger['submitted']}",
        f"completed            {ledger['completed']}",
        f"failed               {ledger['failed']}  {ledger['failed_by_code'] or ''}",
        f"duplicates           {ledger['duplicates']}",
        f"lost                 {ledger['lost']}",
        f"stuck                {ledger['stuck']}  {ledger['stuck_statuses'] or ''}",
        f"messages left        {ledger['messages_left']}  (stage queues + DLQs, visible + in flight)",
        f"DLQ w/o failed row   {ledger['dlq_without_failed_row']}  (dead letters seen {ledger['dead_letters']} "
        f"{ledger['dead_letters_by_code'] or ''})",
        f"children killed      {ledger['children_killed']} of {ledger['children_started']} started "
        f"({100 * ledger['children_killed'] / max(1, ledger['children_started']):.1f}%)",
        f"child outcomes       {ledger['child_outcomes']}",
        f"faults injected      {', '.join(ledger['outages_injected'])}"
        + (f"  (skipped: {', '.join(ledger['faults_skipped'])})" if ledger.get("faults_skipped") else ""),
        f"stale dead letters   {ledger.get('stale_dead_letter_files', 0)} files, {ledger.get('wrongly_failed', 0)} "
        "wrongly failed",
        f"Postgres outage      {ledger.get('pg_outage_s')} s = 4 x the old retry budget "
        f"({ledger.get('old_retry_budget_s_compressed')} s compressed); budget now "
        f"{ledger.get('retry_budget_s_compressed')} s compressed",
        f"stage error codes    {ledger['stage_run_error_codes']}",
        f"elapsed              {ledger['elapsed_s']} s",
        "SQS 'restart'        an outage of a proxy in front of moto (moto keeps queues in memory)",
    ]
    return "\n".join(lines)


def plot(ledger: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    ts = [s[0] for s in ledger["series"]]
    ax.plot(ts, [s[1] for s in ledger["series"]], label="completed", color="tab:green")
    ax.plot(ts, [s[2] for s in ledger["series"]], label="failed", color="tab:orange")
    colours = {"sqs_outage": "tab:blue", "postgres_restart": "tab:purple", "storage_outage": "tab:red"}
    starts = {}
    for e in ledger["events"]:
        kind = e["kind"]
        if kind.endswith("_start"):
            starts[kind.removesuffix("_start")] = e["t"]
        elif kind.endswith("_end"):
            name = kind.removesuffix("_end")
            ax.axvspan(starts.get(name, e["t"]), max(e["t"], starts.get(name, e["t"]) + 0.3),
                       color=colours.get(name, "grey"), alpha=0.3, label=name.replace("_", " "))
    kills = [e["t"] for e in ledger["events"] if e["kind"] == "kill"]
    if kills:
        ax.plot(kills, [0] * len(kills), "k|", markersize=14, label=f"child SIGKILLed ({len(kills)})")
    ax.set_xlabel("seconds since the worker started")
    ax.set_ylabel("documents")
    ax.set_title(f"Chaos: {ledger['submitted']} documents, docpipe worker --concurrency 2")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="documents")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kill-fraction", type=float, default=0.12, help="share of children SIGKILLed")
    parser.add_argument("--outage-s", type=float, default=5.0, help="length of the SQS and storage outages")
    parser.add_argument("--pg-outage-s", type=float, default=PG_OUTAGE_S,
                        help="Postgres down this long (default: 4 x the old retry budget, compressed)")
    parser.add_argument("--scanned-every", type=int, default=4, help="every k-th document is a scanned PDF")
    parser.add_argument("--deadline", type=float, default=1500.0, help="give up waiting after this, s")
    args = parser.parse_args()

    ledger = run_chaos(n=args.n, seed=args.seed, kill_fraction=args.kill_fraction, outage_s=args.outage_s,
                       scanned_every=args.scanned_every, deadline_s=args.deadline, pg_outage_s=args.pg_outage_s,
                       say=lambda s: print(s, flush=True))
    print()
    print(format_ledger(ledger))
    broken = check(ledger)
    ledger["invariants_broken"] = broken
    print("\ninvariants: " + ("all hold" if not broken else "BROKEN: " + "; ".join(broken)))
    path = write_results("chaos", ledger)
    png = RESULTS / "chaos.png"
    plot(ledger, png)
    print(f"wrote {path} and {png}")
    return 0 if not broken else 1


if __name__ == "__main__":
    sys.exit(main())
