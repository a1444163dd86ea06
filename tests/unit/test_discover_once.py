"""Issue 6, "never paid twice": a discover message delivered again, one after the other or after
a crash between the provider's answer and the write, makes no second provider call."""

from __future__ import annotations

import json
import uuid

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.bootstrap import Deps
from shared.models import Discovery, Encounter, EncounterType, FileStatus, PageText, ShellFile, Stage
from shared.ports import EncounterProvider, QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.stages import discover
from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, InMemoryStorage


class CountingProvider(EncounterProvider):
    """One encounter per document, at a price; counts its calls."""

    name = "counting"
    model = "m-1"

    def __init__(self) -> None:
        self.calls = 0

    def discover(self, pages):
        self.calls += 1
        last = max(p.page_number for p in pages)
        encounter = Encounter(encounter_type=EncounterType.LAB, page_ranges=[(1, last)], confidence=0.7)
        return Discovery(encounters=[encounter], provider=self.name, model=self.model, input_tokens=900,
                         output_tokens=100, cost_usd=0.0002)


class CrashingDb(InMemoryDb):
    """complete_discovery dies ``crashes`` times, as a process killed mid-write would."""

    def __init__(self, crashes: int) -> None:
        super().__init__()
        self.crashes = crashes

    def complete_discovery(self, manifest):
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("killed")
        return super().complete_discovery(manifest)


def _deps(tmp_path, db) -> Deps:
    return Deps(
        settings=Settings(storage_backend="local", local_storage_dir=tmp_path),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=db,
        ocr=CannedOcr(),
        encounters=CountingProvider(),
    )


def _file(db, texts=("Pathology report, collected 2024-03-04", "Results continued on this page")) -> uuid.UUID:
    sfid = uuid.uuid4()
    db.create_shell_file(ShellFile(id=sfid, patient_id=uuid.uuid4(), storage_key="k",
                                   status=FileStatus.DISCOVERING, page_count=len(texts)))
    for n, text in enumerate(texts, 1):
        db.upsert_text(sfid, PageText(page_number=n, text=text, engine="native"))
    return sfid


def _deliver(deps, sfid, receive_count):
    msg = QueueMessage("discover", "m-1", "rh", json.dumps({"shell_file_id": str(sfid)}), receive_count)
    event = sqs_event([msg], "arn:aws:sqs:us-east-1:000000000000:docpipe-discover", "us-east-1")
    handle_record(Stage.DISCOVER, SQSRecord(event["Records"][0]), discover.run, deps)


def test_sequential_redelivery_calls_the_provider_once(tmp_path):
    deps = _deps(tmp_path, InMemoryDb())
    sfid = _file(deps.db)
    _deliver(deps, sfid, 1)
    _deliver(deps, sfid, 2)
    assert deps.encounters.calls == 1
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    assert [r.outcome for r in deps.db.runs] == ["succeeded", "skipped"]


@pytest.mark.parametrize("crashes", [1, 2])
def test_redelivery_after_a_crash_between_answer_and_write_calls_the_provider_once(tmp_path, crashes):
    deps = _deps(tmp_path, CrashingDb(crashes))
    sfid = _file(deps.db)
    for attempt in range(1, crashes + 1):
        with pytest.raises(RuntimeError):
            _deliver(deps, sfid, attempt)
        assert deps.db.get_shell_file(sfid).status == FileStatus.DISCOVERING
    _deliver(deps, sfid, crashes + 1)
    _deliver(deps, sfid, crashes + 2)
    assert deps.encounters.calls == 1
    manifest = deps.db.manifest(sfid)
    assert (manifest.provider, manifest.model, manifest.input_tokens, manifest.cost_usd) == ("counting", "m-1", 900, 0.0002)


def test_changed_page_text_is_discovered_afresh(tmp_path):
    # A cached answer is for these exact texts: a file re-read (re-OCR) before the write is asked again.
    deps = _deps(tmp_path, CrashingDb(1))
    sfid = _file(deps.db)
    with pytest.raises(RuntimeError):
        _deliver(deps, sfid, 1)
    deps.db.upsert_text(sfid, PageText(page_number=2, text="Results continued, corrected page", engine="tesseract"))
    _deliver(deps, sfid, 2)
    assert deps.encounters.calls == 2


def test_the_fingerprint_depends_on_provider_model_and_text():
    pages = [PageText(page_number=1, text="a b", engine="native"), PageText(page_number=2, text="c", engine="native")]
    provider = CountingProvider()
    base = discover.discovery_fingerprint(provider, pages)
    assert base == discover.discovery_fingerprint(provider, list(reversed(pages)))
    assert base != discover.discovery_fingerprint(provider, [pages[0].model_copy(update={"text": "a  b"}), pages[1]])
    provider.model = "m-2"
    assert base != discover.discovery_fingerprint(provider, pages)
