"""What the container worker's parent hands ``multiprocessing`` as a child's target.

The parent must never import ``shared.runtime.child`` (it pulls in the handlers and their
dependencies: boto3, psycopg, Powertools), so each target here imports it when it runs,
which is in the child: the fork server has preloaded it (``set_forkserver_preload``), and
under spawn the child imports it then. The contract both sides share is ``shared.runtime.jobs``.
"""

from __future__ import annotations

from shared.runtime.jobs import Job
from shared.settings import Settings


def run_job(job: Job) -> None:
    from shared.runtime.child import run_job as run

    run(job)


def record_abnormal_end(settings: Settings, run) -> None:
    from shared.runtime.child import record_abnormal_end as record

    record(settings, run)
