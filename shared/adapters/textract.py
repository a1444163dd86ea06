"""Amazon Textract, the production OCR engine: ``DetectDocumentText`` on the page JPEG.

Plain boto3 and a small parser of Textract's blocks rather than amazon-textract-textractor:
for one synchronous call on one page image the library adds 18 MB of packages (rapidfuzz,
xlsxwriter, marshmallow, tabulate, two more Textract helpers) and 13 MB of RSS on import,
and reads nothing this parser does not.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions

from shared.errors import DependencyUnavailableError, OcrFailedError, PipelineError, ThrottledError
from shared.models import Box, Line, PageText, Word
from shared.ports import OcrEngine
from shared.settings import Settings

# Synchronous operations take JPEG and PNG images of up to 10 MB.
MAX_IMAGE_BYTES = 10 * 1024 * 1024

# Textract asked us to slow down: botocore's adaptive retries already waited and tried again,
# so the message goes back to the queue and comes again later.
_THROTTLED = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException", "LimitExceededException"})
# Textract looked at the image and will never read it, however often it is sent.
_REJECTED = frozenset(
    {"InvalidParameterException", "UnsupportedDocumentException", "BadDocumentException", "DocumentTooLargeException"}
)


class TextractOcr(OcrEngine):
    """Reads a page image with Amazon Textract's ``DetectDocumentText``.

    The client retries in botocore's adaptive mode (client-side rate limiting plus
    exponential backoff) up to ``textract_max_attempts`` times; what is still throttled
    after that is a ``ThrottledError`` and the queue redelivers the page later. Textract
    being down or unreachable is a ``DependencyUnavailableError``; an image it rejects is an
    ``OcrFailedError``. Error messages name the page and Textract's error code, never the
    text. Lines come in Textract's reading order; boxes and confidences are normalised to
    0..1.
    """

    name = "textract"

    def __init__(self, client) -> None:
        self._client = client

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
        return cls(client)

    def read(self, image: Path, page_number: int) -> PageText:
        data = image.read_bytes()
        if len(data) > MAX_IMAGE_BYTES:
            raise OcrFailedError(
                f"OCR of page {page_number} failed: the page image is {len(data)} bytes, over Textract's "
                f"limit of {MAX_IMAGE_BYTES}"
            )
        started = time.perf_counter()
        try:
            response = self._client.detect_document_text(Document={"Bytes": data})
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise translate(exc, page_number) from exc
        return parse_blocks(response.get("Blocks", []), page_number, (time.perf_counter() - started) * 1000)


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
    """Textract's blocks of one page as page text.

    The PAGE block lists its LINE blocks in reading order (it may list other blocks too:
    AnalyzeDocument's layout, tables and forms, which are skipped), each LINE lists its
    WORD blocks. Lines no PAGE names come after, in the order Textract sent them. The page
    text is the lines' text, one a line.
    """
    by_id = {block.get("Id"): block for block in blocks}
    pages = [block for block in blocks if block.get("BlockType") == "PAGE"]
    ordered = [by_id.get(i) for page in pages for i in _children(page)]
    lines = [block for block in ordered if block is not None and block.get("BlockType") == "LINE"]
    named = {line.get("Id") for line in lines}
    lines += [block for block in blocks if block.get("BlockType") == "LINE" and block.get("Id") not in named]

    out_lines: list[Line] = []
    out_words: list[Word] = []
    for line in lines:
        out_lines.append(Line(text=line.get("Text", ""), box=_box(line), confidence=_confidence(line)))
        for word_id in _children(line):
            word = by_id.get(word_id)
            if word is not None and word.get("BlockType") == "WORD":
                out_words.append(Word(text=word.get("Text", ""), box=_box(word), confidence=_confidence(word)))
    confidences = [w.confidence for w in out_words if w.confidence is not None]
    return PageText(
        page_number=page_number,
        text="\n".join(line.text for line in out_lines),
        lines=out_lines,
        words=out_words,
        confidence=statistics.fmean(confidences) if confidences else None,
        engine=TextractOcr.name,
        duration_ms=duration_ms,
    )


def _children(block: dict) -> Iterable[str]:
    for relationship in block.get("Relationships") or ():
        if relationship.get("Type") == "CHILD":
            yield from relationship.get("Ids") or ()


def _box(block: dict) -> Box:
    # Textract's BoundingBox is already a share of the page, and may stray a hair outside it.
    bounds = (block.get("Geometry") or {}).get("BoundingBox") or {}
    left, top = float(bounds.get("Left", 0.0)), float(bounds.get("Top", 0.0))
    width, height = float(bounds.get("Width", 0.0)), float(bounds.get("Height", 0.0))
    return Box.from_pixels(left, top, left + width, top + height, 1.0, 1.0)


def _confidence(block: dict) -> float | None:
    value = block.get("Confidence")
    return None if value is None else min(1.0, max(0.0, float(value) / 100))
