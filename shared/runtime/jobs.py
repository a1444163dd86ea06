"""The light half of the parent/child contract: the job a child gets, its exit codes and the
result file it leaves. The parent (``shared.runtime.supervisor``) and the child
(``shared.runtime.child``) both import it; it imports neither (the parent's handles on the
child's entry points are in ``shared.runtime.targets``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from shared.ports import QueueMessage
from shared.settings import Settings

EXIT_OK = 0
EXIT_RECORD_FAILED = 3  # the handler reported the record in batchItemFailures
EXIT_CRASHED = 4  # the handler raised past Powertools

RESULT_FILE = ".docpipe-result.json"  # the child's last words, in its own temp dir


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a child needs, passed by value (pickled), never through globals."""

    queue: str
    handler_module: str
    message: QueueMessage
    queue_arn: str
    settings: Settings
    tmpdir: str
    timeout_s: float


def write_result(tmpdir: str, exitcode: int, maxrss_kb: int, retry_after_s: float | None = None) -> None:
    result = {"exit": exitcode, "maxrss_kb": maxrss_kb, "retry_after_s": retry_after_s}
    try:
        Path(tmpdir, RESULT_FILE).write_text(json.dumps(result))
    except OSError:
        pass


def read_result(tmpdir: str) -> dict | None:
    try:
        return json.loads(Path(tmpdir, RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
