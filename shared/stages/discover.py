"""The discover stage ("Pass 0.5"): the page texts of a file -> its healthcare encounters and manifest,
written as a set in one transaction; the file is then completed.

Never paid twice: a completed file is skipped; the provider is called under a lease (two
copies of the message at once pay once); its answer is saved (``discovery_cache``) before
the write, so a delivery after a crash in between reuses it, and a windowed provider's answer
per window (``discovery_windows``), so a throttle after window k keeps the k paid windows.
Called by ``handlers.discover`` with the parsed message."""

from __future__ import annotations

import hashlib
import json
import uuid

from shared.bootstrap import Deps
from shared.errors import DiscoveryInProgressError, NotReadyError
from shared.keys import bundle_key
from shared.models import DiscoverMessage, FileStatus, Manifest, PageText, ShellFile
from shared.observability import logger
from shared.ports import EncounterProvider
from shared.stages.erasure import ensure_not_deleted, missing_file


# The dependencies this stage builds (bootstrap builds each on first use; nothing else).
USES = ("db", "encounters", "queue")
# and with FHIR_OUTPUT=storage, the storage its Bundle goes to
FHIR_USES = ("storage",)


def run(msg: DiscoverMessage, deps: Deps, attempt: int = 1) -> int | str | None:
    row = deps.db.get_shell_file(msg.shell_file_id)
    if row is None:
        raise missing_file(deps, msg.shell_file_id)
    if row.status in (FileStatus.COMPLETED, FileStatus.FAILED):
        return "skipped"
    if row.status != FileStatus.DISCOVERING or not row.page_count:
        raise NotReadyError(f"file is {row.status.value}, not discovering")
    texts = deps.db.page_texts(row.id, boxes=False)  # Pass 0.5 reads text; the boxes of 1,000 pages outgrow it
    if len(texts) < row.page_count:
        raise NotReadyError(f"{len(texts)} of {row.page_count} pages have text")

    # Never paid twice: the provider's answer is saved before anything else is written, so a
    # delivery after a crash (or a lost acknowledgement) between the model call and the write
    # reuses it. The fingerprint ties it to the provider, model and these exact page texts.
    fingerprint = discovery_fingerprint(deps.encounters, texts)
    discovery = deps.db.saved_discovery(row.id, fingerprint)
    reused = discovery is not None
    if discovery is None:
        discovery = _discover_under_lease(deps, row.id, texts)
        ensure_not_deleted(deps, row.id)
        deps.db.save_discovery(row.id, fingerprint, discovery)
    manifest = Manifest.build(row.id, row.page_count, discovery, texts)
    if deps.settings.fhir_output == "storage":
        ensure_not_deleted(deps, row.id)
        store_bundle(deps, row, manifest)
    written = deps.db.complete_discovery(manifest)
    if not written:
        ensure_not_deleted(deps, row.id)
    logger.info(
        "encounters discovered",
        extra={
            "provider": discovery.provider,
            "model": discovery.model,
            "encounters": len(manifest.encounters),
            "pages": row.page_count,
            "reused": reused,
            "input_tokens": discovery.input_tokens,
            "output_tokens": discovery.output_tokens,
            "written": written,
        },
    )
    return row.page_count if written else "skipped"


def _discover_under_lease(deps: Deps, shell_file_id, texts: list[PageText]):
    """Call the provider while holding the file's lease, so two copies of the message at once
    do not both pay for it; a provider that answers in windows keeps each paid window (a
    throttle after window k keeps k). A copy that finds the lease held is retried later, and
    a holder that died frees it when the lease expires."""
    owner = str(uuid.uuid4())
    if not deps.db.claim_discovery(shell_file_id, owner, deps.settings.discovery_lease_s):
        ensure_not_deleted(deps, shell_file_id)  # not a lease held: no row to hold one on
        raise DiscoveryInProgressError(retry_after_s=min(60.0, deps.settings.discovery_lease_s))
    try:
        if getattr(deps.encounters, "caches_windows", False):
            return deps.encounters.discover(texts, window_cache=_WindowCache(deps.db, shell_file_id))
        return deps.encounters.discover(texts)
    finally:
        try:
            deps.db.release_discovery(shell_file_id, owner)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            logger.warning("could not release the discovery lease", extra={"error": type(exc).__name__})


def store_bundle(deps: Deps, row: ShellFile, manifest: Manifest) -> None:
    """FHIR_OUTPUT=storage: the file's FHIR Bundle beside its page images, stored before the file
    is completed, so a completed file always has it; a redelivery stores the same resources."""
    from shared.fhir import build_bundle, locator  # fhirclient is imported only where it is asked for

    bundle = build_bundle(row, deps.db.pages(row.id), manifest, locate=locator(deps.settings))
    data = json.dumps(bundle, separators=(",", ":")).encode()
    deps.storage.put_bytes(bundle_key(row.patient_id, row.id), data, "application/fhir+json")
    logger.info("fhir bundle stored", extra={"entries": len(bundle["entry"]), "bytes": len(data)})


class _WindowCache:
    """The provider's per-window answers for one file, in the database."""

    def __init__(self, db, shell_file_id) -> None:
        self.db, self.shell_file_id = db, shell_file_id

    def get(self, key: str) -> dict | None:
        return self.db.saved_window(self.shell_file_id, key)

    def put(self, key: str, answer: dict, input_tokens: int, output_tokens: int) -> None:
        self.db.save_window(self.shell_file_id, key, answer, input_tokens, output_tokens)


def discovery_fingerprint(provider: EncounterProvider, texts: list[PageText]) -> str:
    """sha256 of what a discovery depends on: the provider, its model, every page's text."""
    digest = hashlib.sha256()
    digest.update(json.dumps([provider.name, getattr(provider, "model", None)]).encode())
    for text in sorted(texts, key=lambda t: t.page_number):
        digest.update(f"\x00{text.page_number}\x00{len(text.text)}\x00".encode())
        digest.update(text.text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()

