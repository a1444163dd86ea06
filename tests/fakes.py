"""Hand-written in-memory fakes of the ports, for unit tests of stage logic (no network)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import tempfile
import threading
import uuid
from pathlib import Path

from pydantic import BaseModel

from shared.errors import FileDeletedError, FileTooLargeError, ObjectMissingError
from shared.models import (
    Discovery,
    Encounter,
    Erasure,
    EncounterType,
    FileStatus,
    Manifest,
    PageText,
    PipelineRun,
    ShellFile,
    ShellFilePage,
    Stage,
)
from shared.ports import Database, EncounterProvider, OcrEngine, Queue, QueueMessage, Storage


class InMemoryQueue(Queue):
    def __init__(self) -> None:
        self.messages: dict[str, list[QueueMessage]] = {}
        self._ids = itertools.count(1)

    def send(self, queue: str, message: BaseModel, delay_s: int = 0) -> str:
        mid = f"m{next(self._ids)}"
        self.messages.setdefault(queue, []).append(QueueMessage(queue, mid, "r" + mid, message.model_dump_json(), 0))
        return mid

    def receive(self, queue, max_messages=1, wait_s=0, visibility_s=None):
        taken, self.messages[queue] = self.messages.get(queue, [])[:max_messages], self.messages.get(queue, [])[max_messages:]
        return [dataclasses.replace(m, receive_count=m.receive_count + 1) for m in taken]

    def delete(self, queue, receipt_handle):
        pass

    def release(self, queue, receipt_handle, delay_s=0):
        raise NotImplementedError

    def depth(self, queue):
        return len(self.messages.get(queue, [])), 0

    def bodies(self, queue: str) -> list[str]:
        return [m.body for m in self.messages.get(queue, [])]


class InMemoryStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: dict[str, bytes] = {}

    def put_file(self, key, path, content_type):
        self.objects[key] = Path(path).read_bytes()

    def put_bytes(self, key, data, content_type):
        self.objects[key] = bytes(data)

    def list_keys(self, prefix):
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete_keys(self, keys):
        for key in keys:
            self.objects.pop(key, None)

    def download(self, key, dest, max_bytes=None):
        if key not in self.objects:
            raise ObjectMissingError("object not found")
        data = self.objects[key]
        if max_bytes is not None and len(data) > max_bytes:
            raise FileTooLargeError("too large")
        Path(dest).write_bytes(data)
        return len(data)


def is_stored(storage: Storage, key: str) -> bool:
    """Whether ``storage`` holds ``key``, asked the way a stage asks: a download (to a temp
    file) that finds the object or raises ``ObjectMissingError``."""
    with tempfile.TemporaryDirectory(prefix="docpipe-test-") as tmp:
        try:
            storage.download(key, Path(tmp) / "object")
        except ObjectMissingError:
            return False
    return True


class InMemoryDb(Database):
    """Implements the port's contract, conditional transitions included."""

    def __init__(self) -> None:
        self.files: dict[uuid.UUID, ShellFile] = {}
        self.pages_: dict[tuple[uuid.UUID, int], ShellFilePage] = {}
        self.texts: dict[tuple[uuid.UUID, int], PageText] = {}
        self.manifests: dict[uuid.UUID, Manifest] = {}
        self.runs: list[PipelineRun] = []
        self.discoveries: dict[uuid.UUID, tuple[str, Discovery]] = {}
        self.leases: dict[uuid.UUID, tuple[str, float]] = {}
        self.erasures: dict[uuid.UUID, Erasure] = {}
        self.purge_leases: dict[uuid.UUID, tuple[str, float, dt.datetime]] = {}
        self._lock = threading.Lock()

    def _exists(self, sfid):
        # The foreign keys of the real schema: a row written for a file whose row is gone.
        if sfid not in self.files:
            raise FileDeletedError("the file was deleted")

    def _set(self, sfid, **changes):
        self.files[sfid] = self.files[sfid].model_copy(update=changes)

    def create_shell_file(self, row):
        self.files.setdefault(row.id, row)

    def get_shell_file(self, sfid):
        return copy.deepcopy(self.files.get(sfid))

    def begin_preprocess(self, sfid):
        with self._lock:
            if sfid in self.files and self.files[sfid].status == FileStatus.QUEUED:
                self._set(sfid, status=FileStatus.PREPROCESSING, ocr_sent_through=0)
        return self.get_shell_file(sfid)

    def record_ocr_sent(self, sfid, through_page):
        with self._lock:
            self._set(sfid, ocr_sent_through=max(self.files[sfid].ocr_sent_through or 0, through_page))

    def set_file_facts(self, sfid, mime_type, byte_size, sha256):
        self._set(sfid, mime_type=mime_type, byte_size=byte_size, sha256=sha256)

    def upsert_page(self, page):
        self._exists(page.shell_file_id)
        self.pages_[(page.shell_file_id, page.page_number)] = page

    def upsert_text(self, sfid, text):
        self._exists(sfid)
        self.texts[(sfid, text.page_number)] = text

    def finish_preprocess(self, sfid, page_count, needs_ocr):
        with self._lock:
            if self.files[sfid].status not in (FileStatus.QUEUED, FileStatus.PREPROCESSING):
                return False
            self._set(sfid, page_count=page_count, status=FileStatus.OCR if needs_ocr else FileStatus.DISCOVERING)
            return True

    def pages_without_text(self, sfid):
        return sorted(n for (f, n) in self.pages_ if f == sfid and (f, n) not in self.texts)

    def try_start_discovery(self, sfid):
        with self._lock:
            row = self.files[sfid]
            done = sum(1 for (f, _) in self.texts if f == sfid)
            if row.status == FileStatus.OCR and row.page_count and done >= row.page_count:
                self._set(sfid, status=FileStatus.DISCOVERING)
                return True
            return False

    def page_texts(self, sfid, boxes=True):
        texts = [t for (f, _), t in sorted(self.texts.items(), key=lambda kv: kv[0][1]) if f == sfid]
        return texts if boxes else [t.model_copy(update={"words": [], "lines": []}) for t in texts]

    def complete_discovery(self, manifest):
        with self._lock:
            if manifest.shell_file_id not in self.files:
                return False
            if self.files[manifest.shell_file_id].status != FileStatus.DISCOVERING:
                return False
            self.manifests[manifest.shell_file_id] = manifest
            self._set(manifest.shell_file_id, status=FileStatus.COMPLETED)
            return True

    def mark_failed(self, sfid, error_code, error_message, at_stage=None):
        with self._lock:
            if sfid not in self.files or self.files[sfid].status in (FileStatus.COMPLETED, FileStatus.FAILED):
                return False
            status = self.files[sfid].status
            if at_stage is not None and not {
                Stage.PREPROCESS: status in (FileStatus.QUEUED, FileStatus.PREPROCESSING),
                Stage.OCR: status in (FileStatus.PREPROCESSING, FileStatus.OCR) and bool(self.pages_without_text(sfid)),
                Stage.DISCOVER: status == FileStatus.DISCOVERING,
            }[at_stage]:
                return False
            self._set(sfid, status=FileStatus.FAILED, error_code=error_code, error_message=error_message)
            return True

    def record_run(self, run):
        self.runs.append(run)

    def last_error_code(self, sfid):
        codes = [r.error_code for r in self.runs if r.shell_file_id == sfid and r.error_code]
        return codes[-1] if codes else None

    def pages(self, sfid):
        return [p for (f, _), p in sorted(self.pages_.items(), key=lambda kv: kv[0][1]) if f == sfid]

    def manifest(self, sfid):
        return self.manifests.get(sfid)

    def save_discovery(self, sfid, fingerprint, discovery):
        self._exists(sfid)
        self.discoveries[sfid] = (fingerprint, discovery.model_copy(deep=True))

    def claim_discovery(self, sfid, owner, lease_s):
        import time

        with self._lock:
            held = self.leases.get(sfid)
            if sfid not in self.files or self.files[sfid].status != FileStatus.DISCOVERING:
                return False
            if held and held[0] != owner and held[1] > time.monotonic():
                return False
            self.leases[sfid] = (owner, time.monotonic() + lease_s)
            return True

    def release_discovery(self, sfid, owner):
        with self._lock:
            if self.leases.get(sfid, (None,))[0] == owner:
                del self.leases[sfid]

    def saved_discovery(self, sfid, fingerprint):
        saved = self.discoveries.get(sfid)
        return saved[1].model_copy(deep=True) if saved and saved[0] == fingerprint else None

    # --- erasure: the trigger's record, the cascade, the purge lease

    def is_deleted(self, sfid):
        return sfid not in self.files and sfid in self.erasures

    def delete_files(self, source, shell_file_ids=None, patient_id=None):
        with self._lock:
            ids = [f for f, row in self.files.items()
                   if (shell_file_ids is not None and f in shell_file_ids) or row.patient_id == patient_id]
            for sfid in ids:
                row = self.files.pop(sfid)
                rows = {"shell_files": 1,
                        "shell_file_pages": len([k for k in self.pages_ if k[0] == sfid]),
                        "ocr_text_extractions": len([k for k in self.texts if k[0] == sfid]),
                        "shell_file_manifests": int(sfid in self.manifests),
                        "discovery_cache": int(sfid in self.discoveries)}
                for table in (self.pages_, self.texts):
                    for key in [k for k in table if k[0] == sfid]:
                        del table[key]
                self.manifests.pop(sfid, None)
                self.discoveries.pop(sfid, None)
                self.erasures[sfid] = Erasure(shell_file_id=sfid, patient_id=row.patient_id, source=source,
                                              requested_at=_now(), page_count=row.page_count, rows_removed=rows)
            return ids

    def record_erasure(self, sfid, patient_id, source):
        self.erasures.setdefault(sfid, Erasure(shell_file_id=sfid, patient_id=patient_id, source=source,
                                               requested_at=_now()))

    def erasure(self, sfid):
        found = self.erasures.get(sfid)
        return found.model_copy() if found else None

    def erasures_of(self, patient_id):
        return [e.model_copy() for e in self.erasures.values() if e.patient_id == patient_id]

    def due_erasures(self, final_sweep_s, limit=100):
        now = _now()
        return [e.model_copy() for e in self.erasures.values() if e.finished_at is None and (
            e.purged_at is None or now >= e.requested_at + dt.timedelta(seconds=final_sweep_s))][:limit]

    def claim_erasure(self, sfid, owner, lease_s):
        import time

        with self._lock:
            held = self.purge_leases.get(sfid)
            if held and held[0] != owner and held[1] > time.monotonic():
                return False
            self.purge_leases[sfid] = (owner, time.monotonic() + lease_s, _now())
            self.erasures[sfid] = self.erasures[sfid].model_copy(
                update={"purge_attempts": self.erasures[sfid].purge_attempts + 1})
            return True

    def finish_purge(self, sfid, owner, objects_removed, final_sweep_s):
        with self._lock:
            held = self.purge_leases.get(sfid)
            if not held or held[0] != owner:
                return None
            del self.purge_leases[sfid]
            e = self.erasures[sfid]
            now = _now()
            final = e.finished_at or (now if held[2] >= e.requested_at + dt.timedelta(seconds=final_sweep_s) else None)
            self.erasures[sfid] = e.model_copy(update={
                "objects_removed": e.objects_removed + objects_removed, "purged_at": now, "last_error_code": None,
                "finished_at": final})
            return self.erasures[sfid].model_copy()

    def fail_purge(self, sfid, owner, error_code, objects_removed=0):
        with self._lock:
            if self.purge_leases.get(sfid, (None,))[0] == owner:
                del self.purge_leases[sfid]
                e = self.erasures[sfid]
                self.erasures[sfid] = e.model_copy(update={
                    "last_error_code": error_code, "objects_removed": e.objects_removed + objects_removed})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class CannedOcr(OcrEngine):
    """Returns the same text for every page and counts its calls."""

    name = "canned"

    def __init__(self, text: str = "Clinic Visit Note\nDate of visit: 2024-03-05\nDr Jane Smith") -> None:
        self.text = text
        self.calls: list[int] = []

    def read(self, image: Path, page_number: int) -> PageText:
        assert image.stat().st_size > 0
        self.calls.append(page_number)
        return PageText(page_number=page_number, text=self.text, engine="canned")


class OneEncounterPerDocument(EncounterProvider):
    name = "fake"

    def discover(self, pages):
        last = max(p.page_number for p in pages)
        return Discovery(
            encounters=[Encounter(encounter_type=EncounterType.OTHER, page_ranges=[(1, last)], confidence=0.5)],
            provider=self.name,
        )
