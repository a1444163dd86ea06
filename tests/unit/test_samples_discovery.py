"""The samples read by real Tesseract (or their text layer) and the heuristic provider, together.

Only these two pieces: no storage, queues or database. Image pages are turned upright
(EXIF orientation applied) and given to Tesseract as PNGs, PDF pages without a text layer
are rendered at 200 DPI first.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pillow_heif
import pymupdf
import pytest
from PIL import Image, ImageOps, ImageSequence

import docpipe_samples as samples
from shared.encounters import HeuristicEncounters
from shared.models import Discovery, EncounterType, Manifest, PageText

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")

OCR_DPI = 200


def _ocr(image: Image.Image) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "page.png"
        image.save(png)
        done = subprocess.run(
            ["tesseract", str(png), "stdout", "--psm", "3"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
        )
    return done.stdout


def _upright_images(path: Path) -> Iterator[Image.Image]:
    pillow_heif.register_heif_opener()
    with Image.open(path) as image:
        for frame in ImageSequence.Iterator(image):
            yield ImageOps.exif_transpose(frame).convert("L")


def _page_texts(path: Path) -> list[PageText]:
    pages: list[PageText] = []
    if path.suffix == ".pdf":
        with pymupdf.open(path) as doc:
            for number, page in enumerate(doc, 1):
                native = page.get_text()
                if native.strip():
                    pages.append(PageText(page_number=number, text=native, engine="native"))
                    continue
                pix = page.get_pixmap(dpi=OCR_DPI, colorspace=pymupdf.csGRAY)
                image = Image.frombytes("L", (pix.width, pix.height), pix.samples)
                pages.append(PageText(page_number=number, text=_ocr(image), engine="tesseract"))
    else:
        for number, image in enumerate(_upright_images(path), 1):
            pages.append(PageText(page_number=number, text=_ocr(image), engine="tesseract"))
    return pages


@pytest.fixture(scope="module")
def discovered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[list[PageText], Discovery]]:
    paths = samples.write_samples(tmp_path_factory.mktemp("samples"))
    provider = HeuristicEncounters()
    out = {}
    for name, path in paths.items():
        pages = _page_texts(path)
        out[name] = (pages, provider.discover(pages))
    return out


def test_every_sample_gives_a_valid_manifest(discovered: dict[str, tuple[list[PageText], Discovery]]) -> None:
    for name, (pages, discovery) in discovered.items():
        manifest = Manifest.build(uuid.uuid4(), len(pages), discovery)
        assert manifest.encounters, name
        assert any(e.date_start for e in manifest.encounters), name


def test_two_visits_is_two_encounters_with_their_dates(
    discovered: dict[str, tuple[list[PageText], Discovery]],
) -> None:
    pages, discovery = discovered["two_visits.pdf"]

    assert [p.engine for p in pages] == ["native"] * 3
    first, second = discovery.encounters
    assert first.page_ranges == [(1, 2)]
    assert (first.date_start, first.date_end) == (dt.date(2024, 3, 5), dt.date(2024, 3, 5))
    assert first.encounter_type == EncounterType.OUTPATIENT
    assert first.facility == "Riverside Medical Centre"
    assert first.provider == "Dr Priya Raman"
    assert second.page_ranges == [(3, 3)]
    assert (second.date_start, second.date_end) == (dt.date(2024, 3, 19), dt.date(2024, 3, 19))
    assert second.encounter_type == EncounterType.OUTPATIENT
    assert second.facility == "Northgate Family Clinic"
    assert second.provider == "Dr Thomas Quigley"


@pytest.mark.parametrize(
    "name, kind, pages, start, end",
    [
        ("scanned_discharge.pdf", EncounterType.INPATIENT, [(1, 2)], dt.date(2024, 2, 11), dt.date(2024, 2, 16)),
        ("fax_referral.tiff", EncounterType.REFERRAL, [(1, 2)], dt.date(2024, 4, 12), None),
        ("lab_photo.jpg", EncounterType.LAB, [(1, 1)], dt.date(2024, 3, 4), None),
        ("phone_letter.heic", EncounterType.EMERGENCY, [(1, 1)], dt.date(2024, 1, 22), dt.date(2024, 1, 22)),
    ],
)
def test_ocr_samples_give_one_dated_encounter(
    discovered: dict[str, tuple[list[PageText], Discovery]],
    name: str,
    kind: EncounterType,
    pages: list[tuple[int, int]],
    start: dt.date,
    end: dt.date | None,
) -> None:
    page_texts, discovery = discovered[name]

    assert all(p.engine == "tesseract" for p in page_texts)
    (encounter,) = discovery.encounters
    assert encounter.encounter_type == kind
    assert encounter.page_ranges == pages
    assert encounter.date_start == start
    assert encounter.date_end == end
    assert encounter.facility and encounter.provider
