"""Handlers for the emulator's own tests (tests/integration/test_lambda_emulator.py): the
CodeUri of the small templates those tests write. Each records what it saw in SEEN_FILE."""

import json
import os
import time

_INVOCATIONS = 0
_db = None


def _seen(record_or_note) -> None:
    path = os.environ.get("SEEN_FILE")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record_or_note) + "\n")


def partial(event, context):
    """Lists the records whose body says "fail"; the rest succeed."""
    failures = []
    for record in event["Records"]:
        _seen({"body": record["body"], "receive_count": record["attributes"]["ApproximateReceiveCount"]})
        if "fail" in record["body"]:
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


def slow(event, context):
    """Sleeps as many seconds as the longest body says, then succeeds."""
    for record in event["Records"]:
        _seen({"body": record["body"], "receive_count": record["attributes"]["ApproximateReceiveCount"]})
    time.sleep(max(float(r["body"]) for r in event["Records"]))
    return {"batchItemFailures": []}


def hog(event, context):
    """Holds as many MB as the first record's body says for a moment."""
    held = bytearray(int(event["Records"][0]["body"]) * 1024 * 1024)
    for i in range(0, len(held), 4096):
        held[i] = 1  # touch every page: resident, not just reserved
    time.sleep(0.3)
    return {"batchItemFailures": [], "held_mb": len(held) // (1024 * 1024)}


def whoami(event, context):
    """Which process and which invocation of it this is, and what its environment holds."""
    global _INVOCATIONS
    _INVOCATIONS += 1
    return {
        "pid": os.getpid(),
        "invocation": _INVOCATIONS,
        "environment": sorted(os.environ),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory_limit_in_mb": context.memory_limit_in_mb,
    }


def database(event, context):
    """Runs one transaction on the process's one PostgresDb (as a warm stage does)."""
    global _db
    from shared.adapters.postgres import PostgresDb

    if _db is None:
        _db = PostgresDb(os.environ["TEST_DATABASE_URL"])
    row = _db.query("select pg_backend_pid() as pid")[0]
    return {"backend_pid": row["pid"], "reconnects": getattr(_db, "reconnects", None)}
