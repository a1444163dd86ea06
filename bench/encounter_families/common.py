"""What every family of the encounter bench shares: a packet, its truth, and reading its pages
as the pipeline reads them.

A family module (``cda``, ``synthea``, ``realpdf``, ``scanned``, ``generated``) exposes

    FAMILY: str                      # its name in the tables
    def available() -> bool          # its data in ../shared is present (else the family is skipped)
    def packets(count: int, seed: int, ocr: CachedOcr | None) -> list[Packet]

and builds each packet from documents some system rendered: the packet's pages are read with
``read_pdf`` (as the preprocess stage reads them: the text layer where a page has a usable one,
Tesseract through ``CachedOcr`` where not). ``scoring.py`` scores packets; no family module
scores or tunes anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path

from shared.models import EncounterType, PageText

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"  # the team's data beside the checkout (never copied in)
CORPUS = SHARED / "corpus"
BUILD = ROOT / "build" / "encounter_families"  # renders and OCR, cached across runs (not committed)


@dataclasses.dataclass(frozen=True)
class Identity:
    """Whose record a document is, as its banner prints it (mrn: the identifier it prints)."""

    name: str
    dob: dt.date | None
    mrn: str | None


@dataclasses.dataclass
class Doc:
    """One source document's truth: what encounter it is, when, and whose."""

    key: str  # unique in the packet
    kind: EncounterType
    start: dt.date | None  # the service date (never the printed/authored date of the export)
    end: dt.date | None
    patient: Identity
    source: str = ""  # where it came from (file, patient, encounter id), for --explain


@dataclasses.dataclass
class Packet:
    """One uploaded file: its pages as the pipeline reads them and, per page, the document it
    belongs to (None: a blank page or fax cover, in no encounter)."""

    name: str
    family: str
    pages: list[PageText]
    truth: list[str | None]
    docs: dict[str, Doc]
    patients: dict[str, Identity]  # per document key: whose banner the document prints
    mixed: bool  # a page or document of another patient is in the packet
    scanned: list[str] = dataclasses.field(default_factory=list)  # document keys read through OCR
    pdf: bytes | None = None  # the packet as one file (the scanned family prints it again)

    @property
    def part(self) -> str:  # the scoring's name for the family
        return self.family


class CachedOcr:
    """The pipeline's Tesseract adapter, its results kept under build/ by the image's hash
    (a page image read once is never read again, in this run or the next)."""

    def __init__(self, tesseract=None, cache: Path = BUILD / "ocr") -> None:
        if tesseract is None:
            from shared.adapters.tesseract import TesseractOcr
            from shared.settings import Settings

            settings = Settings()
            tesseract = TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, 180.0)
        self.tesseract = tesseract
        self.cache = cache
        self.pages = 0
        self.cached = 0
        cache.mkdir(parents=True, exist_ok=True)

    def __call__(self, jpeg: bytes) -> tuple[str, float | None]:
        digest = hashlib.sha256(jpeg).hexdigest()[:32]
        hit = self.cache / f"{digest}.json"
        if hit.exists():
            self.cached += 1
            cached = json.loads(hit.read_text())
            return cached["text"], cached["confidence"]
        with tempfile.TemporaryDirectory(prefix="encounters-ocr-") as tmp:
            path = Path(tmp) / f"{digest}.jpg"
            path.write_bytes(jpeg)
            read = self.tesseract.read(path, 1)
        self.pages += 1
        hit.write_text(json.dumps({"text": read.text, "confidence": read.confidence}))
        return read.text, read.confidence


def read_pdf(data: bytes, ocr: CachedOcr | None = None) -> list[tuple[str, str, float | None]]:
    """(text, engine, confidence) per page, as preprocess and OCR read it: the text layer where
    the page has a usable one, else Tesseract on the page's JPEG (empty text without ``ocr``)."""
    from shared.pages.documents import Limits, open_document
    from shared.pages.sniff import DocumentKind
    from shared.settings import Settings

    out: list[tuple[str, str, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="encounters-read-") as tmp:
        path = Path(tmp) / "doc.pdf"
        path.write_bytes(data)
        with open_document(path, DocumentKind.PDF, Limits.from_settings(Settings())) as document:
            for page in document.pages():
                if page.native_text is not None:
                    out.append((page.native_text.text, "native", None))
                elif ocr is not None:
                    text, confidence = ocr(page.jpeg)
                    out.append((text, "tesseract", confidence))
                else:
                    out.append(("", "tesseract", None))
                page.release()
    return out


def pages_of(texts: list[tuple[str, str, float | None]]) -> list[PageText]:
    """PageTexts numbered from 1, as the discover stage hands them to a provider."""
    return [PageText(page_number=n, text=t, engine=e, confidence=c) for n, (t, e, c) in enumerate(texts, 1)]
