from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from shared.errors import InvalidMessageError
from shared.keys import original_key, page_key
from shared.models import Discovery, Encounter, EncounterType, Manifest, OcrMessage, Stage
from shared.runtime.records import parse_message


def test_messages_are_strict():
    sfid = str(uuid.uuid4())
    assert parse_message(Stage.OCR, f'{{"shell_file_id": "{sfid}", "page_numbers": [3, 1]}}').page_numbers == [1, 3]
    for body in (
        f'{{"shell_file_id": "{sfid}", "extra": 1}}',
        '{"shell_file_id": "../../etc/passwd"}',
        f'{{"shell_file_id": "{sfid}", "page_numbers": [0]}}',
        f'{{"shell_file_id": "{sfid}", "page_numbers": [1, 1]}}',
        "[]",
        "",
        '{"shell_file_id": "' + sfid + '", "pad": "' + "x" * 5000 + '"}',
    ):
        with pytest.raises(InvalidMessageError):
            parse_message(Stage.OCR if "page_numbers" in body else Stage.PREPROCESS, body)


def test_storage_keys_come_from_ids_only():
    p, f = uuid.uuid4(), uuid.uuid4()
    assert original_key(p, f, "pdf") == f"originals/{p}/{f}/original.pdf"
    assert page_key(p, f, 7).endswith(f"{f}/page-0007.jpg")
    with pytest.raises(ValueError):
        original_key("../../x", f, "pdf")
    with pytest.raises(ValueError):
        original_key(p, f, "pdf/../../x")
    with pytest.raises(ValueError):
        page_key(p, f, 0)


def test_manifest_validation():
    sfid = uuid.uuid4()
    enc = lambda *ranges: Encounter(encounter_type=EncounterType.LAB, page_ranges=list(ranges), confidence=0.8)  # noqa: E731
    ok = Manifest.build(sfid, 4, Discovery(encounters=[enc((1, 2)), enc((4, 4))], provider="t"))
    assert ok.page_assignments == {1: 0, 2: 0, 3: None, 4: 1}
    with pytest.raises(ValidationError):  # page assigned twice
        Manifest.build(sfid, 4, Discovery(encounters=[enc((1, 2)), enc((2, 3))], provider="t"))
    with pytest.raises(ValidationError):  # outside the document
        Manifest.build(sfid, 2, Discovery(encounters=[enc((1, 3))], provider="t"))
    with pytest.raises(ValidationError):  # reversed range
        enc((3, 1))


def test_ocr_message_bounds():
    with pytest.raises(ValidationError):
        OcrMessage(shell_file_id=uuid.uuid4(), page_numbers=[])
