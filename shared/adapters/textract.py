"""Amazon Textract, the production OCR engine, read through amazon-textract-textractor.

One synchronous call per page JPEG: ``DetectDocumentText``, or ``AnalyzeDocument`` with the
features ``TEXTRACT_FEATURES`` names (LAYOUT, TABLES, FORMS). The call is plain boto3 (our
client: adaptive retries, timeouts, endpoint from settings, our error taxonomy); the answer is
read by textractor's response parser into pages, lines, words, layout and tables. From it this
module keeps what ``PageText`` holds: the lines in Textract's reading order with their words,
boxes and confidences; the layout blocks the encounter cues read (title, header, footer, page
number, section header); each table as markdown; and what the page cost.

textractor costs ~13 MB of RSS on import (``bench/textract_rss.py``): nothing in a process that
lives for one message, and only the OCR stage with OCR_ENGINE=textract imports it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
from tabulate import tabulate
from textractor.data.constants import (
    LAYOUT_FOOTER,
    LAYOUT_HEADER,
    LAYOUT_PAGE_NUMBER,
    LAYOUT_SECTION_HEADER,
    LAYOUT_TITLE,
)
from textractor.entities.bbox import BoundingBox
from textractor.entities.line import Line as TextractLine
from textractor.parsers import response_parser

from shared.errors import DependencyUnavailableError, OcrFailedError, PipelineError, ThrottledError
from shared.models import Box, LayoutBlock, Line, PageText, Word
from shared.ports import OcrEngine
from shared.settings import Settings, TextractFeature

# Synchronous operations take JPEG and PNG images of up to 10 MB.
MAX_IMAGE_BYTES = 10 * 1024 * 1024

# Textract's list prices per page, US East (N. Virginia), the first million pages a month
# (https://aws.amazon.com/textract/pricing/). AnalyzeDocument's text comes with its features, so
# a page costs the sum of the features asked for; DetectDocumentText when none is.
# (QUERIES, $0.015, is not offered: it needs the questions.)
DETECT_USD_PER_PAGE = 0.0015
FEATURE_USD_PER_PAGE: dict[str, float] = {"LAYOUT": 0.004, "TABLES": 0.015, "FORMS": 0.05}

# The layout blocks kept with the page text, by the kind PageText.layout names them.
_LAYOUT_KINDS = {
    LAYOUT_TITLE: "title",
    LAYOUT_HEADER: "header",
    LAYOUT_FOOTER: "footer",
    LAYOUT_PAGE_NUMBER: "page_number",
    LAYOUT_SECTION_HEADER: "section_header",
}

# Textract asked us to slow down: botocore's adaptive retries already waited and tried again,
# so the message goes back to the queue and comes again later.
_THROTTLED = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"})
# Textract looked at the image and will never read it, however often it is sent.
_REJECTED = frozenset(
    {"InvalidParameterException", "UnsupportedDocumentException", "BadDocumentException", "DocumentTooLargeException"}
)


def page_price(features: Iterable[str] = ()) -> float:
    """What Textract charges for one page read with ``features`` (none: DetectDocumentText)."""
    features = tuple(features)
    return round(sum(FEATURE_USD_PER_PAGE[f] for f in features), 6) if features else DETECT_USD_PER_PAGE


class TextractOcr(OcrEngine):
    """Reads a page image with Amazon Textract: ``DetectDocumentText``, or ``AnalyzeDocument``
    with ``features``.

    The client retries in botocore's adaptive mode (client-side rate limiting plus
    exponential backoff) up to ``textract_max_attempts`` times; what is still throttled
    after that is a ``ThrottledError`` and the queue redelivers the page later. Textract
    being down or unreachable is a ``DependencyUnavailableError``; an image it rejects, or an
    answer that cannot be read, is an ``OcrFailedError``. Error messages name the page and
    Textract's error code, never the text. Lines come in Textract's reading order; boxes and
    confidences are normalised to 0..1; ``cost_usd`` is the page's list price.
    """

    name = "textract"

    def __init__(self, client, features: Iterable[TextractFeature] = ()) -> None:
        self._client = client
        self.features: tuple[str, ...] = tuple(features)
        self.price = page_price(self.features)

    @classmethod
    def from_settings(cls, settings: Settings) -> TextractOcr:
        config = botocore.config.Config(
            retries={"mode": "adaptive", "max_attempts": settings.textract_max_attempts},
            connect_timeout=5,
            read_timeout=settings.ocr_timeout_s,
        )
        client = boto3.client(
            "textract",
            region_name=settings.aws_region,
            endpoint_url=settings.textract_endpoint_url or settings.aws_endpoint_url,
            config=config,
        )
        return cls(client, settings.textract_features)

    def read(self, image: Path, page_number: int) -> PageText:
        data = image.read_bytes()
        if len(data) > MAX_IMAGE_BYTES:
            raise OcrFailedError(
                f"OCR of page {page_number} failed: the page image is {len(data)} bytes, over Textract's "
                f"limit of {MAX_IMAGE_BYTES}"
            )
        started = time.perf_counter()
        try:
            if self.features:
                response = self._client.analyze_document(Document={"Bytes": data}, FeatureTypes=list(self.features))
            else:
                response = self._client.detect_document_text(Document={"Bytes": data})
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise translate(exc, page_number) from exc
        text = parse_blocks(response.get("Blocks", []), page_number, (time.perf_counter() - started) * 1000)
        return text.model_copy(update={"cost_usd": self.price})


def translate(exc: Exception, page_number: int) -> PipelineError:
    """Map a botocore exception from Textract to docpipe's taxonomy."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "") or "client error"
        if code in _THROTTLED:
            return ThrottledError(f"OCR of page {page_number}: Textract throttled the request ({code})")
        if code in _REJECTED:
            return OcrFailedError(f"OCR of page {page_number} failed: Textract rejected the image ({code})")
        # InternalServerError, AccessDeniedException, anything new: retried, then the DLQ.
        return DependencyUnavailableError(f"OCR of page {page_number}: Textract failed ({code})")
    reason = type(exc).__name__  # EndpointConnectionError, ReadTimeoutError, NoCredentialsError...
    return DependencyUnavailableError(f"OCR of page {page_number}: Textract could not be reached ({reason})")


def parse_blocks(blocks: list[dict], page_number: int, duration_ms: float = 0.0) -> PageText:
    """Textract's blocks of one page image (either operation's answer) as page text.

    textractor sorts a page's lines by position, which reads a two-column page straight
    across; the PAGE block lists its lines in Textract's reading order, and that order is
    kept. The page text is the lines' text, one a line; layout blocks of the kinds
    ``LayoutBlock`` names come in textractor's reading order, tables as markdown.
    """
    # FORMS' key-values are not kept; given to textractor, they are folded into the layout and
    # take the lines they overlap out of it (a letterhead's "Telephone: ..." leaves its header,
    # a heading beside a table goes), and the cues want the layout as Textract sent it.
    blocks = [block for block in blocks if block.get("BlockType") != "KEY_VALUE_SET"]
    try:
        # The page count is the PAGE blocks', not DocumentMetadata's (moto's is not a number).
        pages = sum(1 for block in blocks if block.get("BlockType") == "PAGE")
        document = response_parser.parse({"Blocks": blocks, "DocumentMetadata": {"Pages": pages}})
    except Exception as exc:  # textractor asserts and indexes: a malformed answer is any of them
        raise OcrFailedError(
            f"OCR of page {page_number} failed: Textract's answer could not be read ({type(exc).__name__})"
        ) from exc

    out_lines: list[Line] = []
    out_words: list[Word] = []
    layout: list[LayoutBlock] = []
    tables: list[str] = []
    for page in document.pages:
        order = {block_id: index for index, block_id in enumerate(page.child_ids)}
        # Lines textractor made up for words no LINE holds (form values, cells) are not Textract's.
        lines = sorted((line for line in page.lines if line.id in order), key=lambda line: order[line.id])
        for line in lines:
            out_lines.append(Line(text=_line_text(line), box=_box(line.bbox), confidence=_confidence(line.confidence)))
            out_words.extend(
                Word(text=word.text or "", box=_box(word.bbox), confidence=_confidence(word.confidence))
                for word in line.words
            )
        layout.extend(
            LayoutBlock(
                kind=_LAYOUT_KINDS[block.layout_type],
                text="\n".join(_line_text(c) for c in block.children if isinstance(c, TextractLine)),
                box=_box(block.bbox),
            )
            for block in page.layouts
            if block.layout_type in _LAYOUT_KINDS
        )
        tables.extend(_markdown(table.to_list()) for table in page.tables)
    confidences = [w.confidence for w in out_words if w.confidence is not None]
    return PageText(
        page_number=page_number,
        text="\n".join(line.text for line in out_lines),
        lines=out_lines,
        words=out_words,
        confidence=statistics.fmean(confidences) if confidences else None,
        engine=TextractOcr.name,
        duration_ms=duration_ms,
        layout=[block for block in layout if block.text],
        tables=[table for table in tables if table],
    )


def _line_text(line: TextractLine) -> str:
    # Textract's own LINE text; textractor's ``text`` is the words joined, which is the same
    # on every answer seen, but the LINE's is what Textract read.
    raw = getattr(line, "raw_object", None) or {}
    return raw.get("Text", line.text)


def _markdown(rows: list[list[str]]) -> str:
    """A table as GitHub markdown, its first row the header. (textractor's own markdown goes
    through pandas, 60 MB the Lambda zip has no room for; tabulate is what pandas would call.)"""
    rows = [[" ".join((cell or "").split()).replace("|", "\\|") for cell in row] for row in rows if row]
    if not rows:
        return ""
    return tabulate(rows[1:], headers=rows[0], tablefmt="github")


def _box(bbox: BoundingBox) -> Box:
    # Textract's boxes are already a share of the page, and may stray a hair outside it.
    return Box.from_pixels(bbox.x, bbox.y, bbox.x + bbox.width, bbox.y + bbox.height, 1.0, 1.0)


def _confidence(value: float | None) -> float | None:
    # textractor's confidences are Textract's percentages over 100 already.
    return None if value is None else min(1.0, max(0.0, float(value)))
