"""Discover ("Pass 0.5"): the page texts of a file -> its healthcare encounters and manifest,
written as a set in one transaction; the file is then completed."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import Deps
from shared.errors import FileNotFoundInDbError, NotReadyError
from shared.models import DiscoverMessage, FileStatus, Manifest, Stage
from shared.observability import logger
from shared.runtime.batch import process_sqs_batch
from shared.runtime.records import handle_record


def run(msg: DiscoverMessage, deps: Deps, attempt: int = 1) -> str | None:
    row = deps.db.get_shell_file(msg.shell_file_id)
    if row is None:
        raise FileNotFoundInDbError()
    if row.status in (FileStatus.COMPLETED, FileStatus.FAILED):
        return "skipped"
    if row.status != FileStatus.DISCOVERING or not row.page_count:
        raise NotReadyError(f"file is {row.status.value}, not discovering")
    texts = deps.db.page_texts(row.id)
    if len(texts) < row.page_count:
        raise NotReadyError(f"{len(texts)} of {row.page_count} pages have text")

    discovery = deps.encounters.discover(texts)
    manifest = Manifest.build(row.id, row.page_count, discovery, texts)
    written = deps.db.complete_discovery(manifest)
    logger.info(
        "encounters discovered",
        extra={
            "provider": discovery.provider,
            "encounters": len(manifest.encounters),
            "pages": row.page_count,
            "written": written,
        },
    )
    return None if written else "skipped"


def record_handler(record: SQSRecord) -> None:
    handle_record(Stage.DISCOVER, record, run)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict, context) -> dict:
    return process_sqs_batch(event, context, record_handler)
