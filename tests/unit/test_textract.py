"""TextractOcr on real Textract responses, replayed through botocore's Stubber or a seeded
in-process moto backend; never a hand-written response.

The responses and their images live in ``../shared/fixtures/textract`` beside the repository
(aws-samples/amazon-textract-textractor's saved API responses); the tests that need them skip
when it is absent. Botocore's Stubber answers before the retry machinery runs, so the tests of
adaptive retries put the throttling on the wire instead (a ``before-send`` hook that answers
HTTP 400 ThrottlingException) and let moto, seeded with a real response, answer the rest.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import boto3
import botocore.config
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ClientError
from botocore.stub import ANY, Stubber
from pydantic import ValidationError

from shared.adapters.textract import MAX_IMAGE_BYTES, TextractOcr, parse_blocks
from shared.bootstrap import Deps, build_deps
from shared.errors import DependencyUnavailableError, OcrFailedError, ThrottledError
from shared.models import FileStatus, Stage
from shared.ports import QueueMessage
from shared.runtime.events import sqs_event
from shared.runtime.records import handle_record
from shared.settings import Settings
from shared.stages import discover, ocr, preprocess
from shared.submit import submit
from tests.fakes import InMemoryDb, InMemoryQueue, InMemoryStorage, OneEncounterPerDocument

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "textract"
RESPONSES = sorted(FIXTURES.glob("*.textract.json")) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(not RESPONSES, reason=f"no Textract fixtures in {FIXTURES}")


def load(path: Path) -> dict:
    """A saved response as DetectDocumentText returns it. Some fixtures were made by
    AnalyzeDocument: their blocks are kept as Textract sent them, only the name of the model
    version key differs between the two operations' outputs."""
    response = json.loads(path.read_text())
    if "AnalyzeDocumentModelVersion" in response:
        response["DetectDocumentTextModelVersion"] = response.pop("AnalyzeDocumentModelVersion")
    return response


def image_for(response_path: Path, tmp_path: Path) -> Path:
    """The image the response was made from, or (for the one saved without it) a small JPEG."""
    image = response_path.with_name(response_path.name.removesuffix(".textract.json"))
    if image.is_file():
        return image
    stand_in = tmp_path / "page-0001.jpg"
    stand_in.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    return stand_in


def client(max_attempts: int = 3):
    config = botocore.config.Config(retries={"mode": "adaptive", "max_attempts": max_attempts})
    return boto3.client(
        "textract", region_name="us-east-1", config=config, aws_access_key_id="test", aws_secret_access_key="test"
    )


def expected_lines(response: dict) -> list[dict]:
    return [b for b in response["Blocks"] if b["BlockType"] == "LINE"]


def expected_words(response: dict) -> list[dict]:
    by_id = {b["Id"]: b for b in response["Blocks"]}
    return [
        by_id[i]
        for line in expected_lines(response)
        for rel in line.get("Relationships", [])
        if rel["Type"] == "CHILD"
        for i in rel["Ids"]
        if by_id[i]["BlockType"] == "WORD"
    ]


def assert_matches(text, response: dict) -> None:
    lines, words = expected_lines(response), expected_words(response)
    assert text.engine == "textract"
    assert [line.text for line in text.lines] == [b["Text"] for b in lines]
    assert text.text == "\n".join(b["Text"] for b in lines)
    assert [w.text for w in text.words] == [b["Text"] for b in words]
    for item, block in [*zip(text.lines, lines), *zip(text.words, words)]:
        bb = block["Geometry"]["BoundingBox"]
        assert item.box.x0 == pytest.approx(max(0.0, bb["Left"]), abs=1e-4)
        assert item.box.y0 == pytest.approx(max(0.0, bb["Top"]), abs=1e-4)
        assert item.box.x1 == pytest.approx(min(1.0, bb["Left"] + bb["Width"]), abs=1e-4)
        assert item.box.y1 == pytest.approx(min(1.0, bb["Top"] + bb["Height"]), abs=1e-4)
        assert item.confidence == pytest.approx(block["Confidence"] / 100)
    assert text.confidence == pytest.approx(sum(b["Confidence"] for b in words) / 100 / len(words))


# --- parsing real responses, served by Stubber -----------------------------------------


@needs_fixtures
@pytest.mark.parametrize("response_path", RESPONSES, ids=lambda p: p.name)
def test_reads_a_real_response(response_path: Path, tmp_path: Path) -> None:
    # Given Textract's real answer for an image, served for exactly that image's bytes
    response = load(response_path)
    image = image_for(response_path, tmp_path)
    textract = client()
    with Stubber(textract) as stub:
        stub.add_response("detect_document_text", response, {"Document": {"Bytes": image.read_bytes()}})

        # When the adapter reads the image
        text = TextractOcr(textract).read(image, page_number=3)

        # Then every LINE is a line, in Textract's order, with its WORDs, boxes and confidences
        stub.assert_no_pending_responses()
    assert text.page_number == 3 and text.duration_ms > 0
    assert_matches(text, response)


@needs_fixtures
def test_reading_order_follows_the_page_block() -> None:
    # Given a real response whose blocks arrive in another order than the PAGE lists its lines
    response = load(FIXTURES / "detect_document_text.textract.json")
    page, *others = response["Blocks"]
    assert page["BlockType"] == "PAGE"
    shuffled = [page, *reversed(others)]

    text = parse_blocks(shuffled, page_number=1)

    assert [line.text for line in text.lines] == [b["Text"] for b in expected_lines(response)]


def test_an_empty_page() -> None:
    # A PAGE block as Textract sends one for a page without text: the whole page, no children.
    page = {"BlockType": "PAGE", "Id": "p", "Geometry": {"BoundingBox": {"Width": 1.0, "Height": 1.0, "Left": 0.0, "Top": 0.0}}}
    text = parse_blocks([page], page_number=2)
    assert (text.text, text.lines, text.words, text.confidence) == ("", [], [], None)
    assert (text.layout, text.tables) == ([], [])


def test_an_answer_that_cannot_be_read_is_a_permanent_error() -> None:
    with pytest.raises(OcrFailedError) as caught:
        parse_blocks([{"BlockType": "PAGE", "Id": "p"}], page_number=2)  # no geometry: not Textract's
    assert not caught.value.retryable and "page 2" in caught.value.message


# --- AnalyzeDocument: layout, tables, the price of the features --------------------------

LAYOUT_KINDS = {
    "LAYOUT_TITLE": "title",
    "LAYOUT_HEADER": "header",
    "LAYOUT_FOOTER": "footer",
    "LAYOUT_PAGE_NUMBER": "page_number",
    "LAYOUT_SECTION_HEADER": "section_header",
}


def expected_layout(response: dict) -> list[tuple[str, str, dict]]:
    """The layout blocks of the kinds kept, in the PAGE's order: kind, their lines' text, box."""
    by_id = {b["Id"]: b for b in response["Blocks"]}
    (page,) = [b for b in response["Blocks"] if b["BlockType"] == "PAGE"]
    out = []
    for block_id in (i for rel in page["Relationships"] if rel["Type"] == "CHILD" for i in rel["Ids"]):
        block = by_id[block_id]
        if block["BlockType"] in LAYOUT_KINDS:
            lines = [by_id[i]["Text"] for rel in block.get("Relationships", []) if rel["Type"] == "CHILD"
                     for i in rel["Ids"] if by_id[i]["BlockType"] == "LINE"]
            out.append((LAYOUT_KINDS[block["BlockType"]], "\n".join(lines), block["Geometry"]["BoundingBox"]))
    return out


@needs_fixtures
@pytest.mark.parametrize("name", ["form.png", "single-page-1.png"])
def test_layout_blocks_come_with_the_page_text(name: str) -> None:
    # Given AnalyzeDocument's answer with LAYOUT for a form and a test page
    response = json.loads((FIXTURES / f"{name}.textract.json").read_text())

    text = parse_blocks(response["Blocks"], page_number=1)

    # Then every title, header and section header is there, in reading order, with its lines and box
    expected = expected_layout(response)
    assert [(b.kind, b.text) for b in text.layout] == [(kind, t) for kind, t, _ in expected]
    assert {"title", "section_header"} <= {b.kind for b in text.layout}
    for block, (_, _, bb) in zip(text.layout, expected):
        assert block.box.x0 == pytest.approx(bb["Left"], abs=1e-4)
        assert block.box.y1 == pytest.approx(bb["Top"] + bb["Height"], abs=1e-4)
    # and the lines, words and confidences are read as DetectDocumentText's are
    assert_matches(text, response)


@needs_fixtures
def test_the_forms_title_and_headers() -> None:
    text = parse_blocks(json.loads((FIXTURES / "form.png.textract.json").read_text())["Blocks"], page_number=1)
    titles = [b.text for b in text.layout if b.kind == "title"]
    assert titles == ["ENERGY ASSISTANCE PROGRAM", "LASVEGAS/NORTH LAS VEGAS"]
    assert "DIVISION OF WELFARE AND SUPPORTIVE SERVICES" in [b.text for b in text.layout if b.kind == "header"]


@needs_fixtures
def test_tables_as_markdown() -> None:
    # Given the form's answer with TABLES: a household table and a contact table
    response = json.loads((FIXTURES / "form.png.textract.json").read_text())

    text = parse_blocks(response["Blocks"], page_number=1)

    # Then each table is GitHub markdown: a header row, a rule, a row per table row
    assert len(text.tables) == 2 == sum(b["BlockType"] == "TABLE" for b in response["Blocks"])
    household, contact = text.tables
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in contact.splitlines()]
    assert rows[0] == ["Home Phone", "Day/Message/Cell Phone", "E-mail Address"]
    assert set(rows[1][0]) == {"-"} and rows[2] == ["( ) 414-2285", "( ) 122-3453", "johndoe@gmail.com"]
    header, rule, *body = household.splitlines()
    assert "Date of Birth (mm/dd/yy)" in header and "Social Security Number" in header
    assert len(body) == 5 and "| Doe John" in body[0] and "111-22-2333" in body[0]
    assert "[X]" in body[0]  # a ticked box in a cell reads as one


@needs_fixtures
def test_analyze_document_with_the_features_and_their_price(tmp_path: Path) -> None:
    # Given TEXTRACT_FEATURES=LAYOUT,TABLES and Textract's recorded answer for the form
    response = json.loads((FIXTURES / "form.png.textract.json").read_text())
    image = FIXTURES / "form.png"
    textract = client()
    engine = TextractOcr(textract, features=("LAYOUT", "TABLES"))
    with Stubber(textract) as stub:
        stub.add_response(
            "analyze_document", response,
            {"Document": {"Bytes": image.read_bytes()}, "FeatureTypes": ["LAYOUT", "TABLES"]},
        )

        # When the page is read
        text = engine.read(image, page_number=1)
        stub.assert_no_pending_responses()

    # Then it is AnalyzeDocument's reading, layout and tables included, at LAYOUT + TABLES' price
    assert_matches(text, response)
    assert text.layout and len(text.tables) == 2
    assert text.cost_usd == pytest.approx(0.004 + 0.015)


def test_detect_document_text_is_the_default_and_costs_its_price(tmp_path: Path) -> None:
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")
    page = {"BlockType": "PAGE", "Id": "p", "Geometry": {"BoundingBox": {"Width": 1.0, "Height": 1.0, "Left": 0.0, "Top": 0.0}}}
    textract = client()
    with Stubber(textract) as stub:
        stub.add_response("detect_document_text", {"Blocks": [page]}, {"Document": {"Bytes": ANY}})
        text = TextractOcr(textract).read(image, 1)
    assert text.cost_usd == 0.0015 and (text.layout, text.tables) == ([], [])


def test_features_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTRACT_FEATURES", "layout, TABLES")
    settings = Settings(aws_region="us-east-1")
    assert settings.textract_features == ("LAYOUT", "TABLES")
    assert TextractOcr.from_settings(settings).features == ("LAYOUT", "TABLES")
    monkeypatch.setenv("TEXTRACT_FEATURES", "")
    assert Settings().textract_features == ()


@pytest.mark.parametrize("value", ["LAYOUT,QUERIES", "TABLE", "LAYOUT;TABLES"])
def test_an_unknown_feature_is_a_configuration_error_naming_the_variable(value, monkeypatch) -> None:
    monkeypatch.setenv("TEXTRACT_FEATURES", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "textract_features" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "error"),
    [("ThrottlingException", ThrottledError), ("BadDocumentException", OcrFailedError),
     ("InternalServerError", DependencyUnavailableError)],
)
def test_analyze_document_errors_become_ours(code, error, tmp_path: Path) -> None:
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")
    textract = client()
    with Stubber(textract) as stub:
        stub.add_client_error("analyze_document", service_error_code=code, http_status_code=400)
        with pytest.raises(error) as caught:
            TextractOcr(textract, features=("LAYOUT",)).read(image, page_number=4)
    assert "page 4" in caught.value.message and code in caught.value.message


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error", "retryable"),
    [
        ("ThrottlingException", ThrottledError, True),
        ("ProvisionedThroughputExceededException", ThrottledError, True),
        ("LimitExceededException", ThrottledError, True),
        ("InternalServerError", DependencyUnavailableError, True),
        ("AccessDeniedException", DependencyUnavailableError, True),
        ("InvalidParameterException", OcrFailedError, False),
        ("UnsupportedDocumentException", OcrFailedError, False),
        ("BadDocumentException", OcrFailedError, False),
        ("DocumentTooLargeException", OcrFailedError, False),
    ],
)
def test_vendor_errors_become_ours(code, error, retryable, tmp_path: Path) -> None:
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0Patient Canary Jones")
    textract = client()
    with Stubber(textract) as stub:
        stub.add_client_error("detect_document_text", service_error_code=code, http_status_code=400)
        with pytest.raises(error) as caught:
            TextractOcr(textract).read(image, page_number=4)
    assert caught.value.retryable is retryable
    assert isinstance(caught.value.__cause__, ClientError)
    assert "page 4" in caught.value.message and code in caught.value.message
    assert "Canary" not in caught.value.message


def test_textract_out_of_reach_is_retryable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an endpoint on this machine where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = Settings(aws_region="us-east-1", textract_endpoint_url=f"http://127.0.0.1:{port}", textract_max_attempts=1)
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")

    with pytest.raises(DependencyUnavailableError) as caught:
        TextractOcr.from_settings(settings).read(image, page_number=2)

    assert caught.value.retryable and "EndpointConnectionError" in caught.value.message
    assert isinstance(caught.value.__cause__, BotoCoreError)


def test_an_image_over_the_limit_is_not_sent(tmp_path: Path) -> None:
    image = tmp_path / "page-0001.jpg"
    with image.open("wb") as f:
        f.truncate(MAX_IMAGE_BYTES + 1)
    textract = client()
    with Stubber(textract):  # no responses queued: any call would fail the test
        with pytest.raises(OcrFailedError) as caught:
            TextractOcr(textract).read(image, page_number=1)
    assert not caught.value.retryable


def test_built_from_settings_with_adaptive_retries(tmp_path: Path) -> None:
    settings = Settings(
        ocr_engine="textract",
        aws_region="eu-west-2",
        aws_endpoint_url="http://127.0.0.1:5999",
        textract_endpoint_url="http://127.0.0.1:5111",
        textract_max_attempts=5,
    )
    deps = build_deps(
        settings,
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        encounters=OneEncounterPerDocument(),
    )
    assert isinstance(deps.ocr, TextractOcr) and deps.ocr.name == "textract"
    meta = deps.ocr._client.meta
    assert meta.region_name == "eu-west-2" and meta.endpoint_url == "http://127.0.0.1:5111"
    # botocore keeps max_attempts (retries) as total_max_attempts: the first try and five retries.
    assert meta.config.retries == {"mode": "adaptive", "total_max_attempts": 6}
    fallback = TextractOcr.from_settings(settings.model_copy(update={"textract_endpoint_url": None}))
    assert fallback._client.meta.endpoint_url == "http://127.0.0.1:5999"


# --- adaptive retries: throttling on the wire, a seeded moto backend behind it ---------


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_):
        yield self._data


@pytest.fixture
def moto_textract(monkeypatch: pytest.MonkeyPatch):
    """Moto's in-process Textract, seeded with a real response; yields that response."""
    moto = pytest.importorskip("moto")
    from moto.textract.models import TextractBackend

    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_TEXTRACT", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    response = load(FIXTURES / "detect_document_text.textract.json")
    monkeypatch.setattr(TextractBackend, "BLOCKS", response["Blocks"])
    with moto.mock_aws():
        yield response


def throttle_first(engine: TextractOcr, count: int) -> list[int]:
    """Answer the first ``count`` HTTP sends with 400 ThrottlingException; return the send log."""
    sends: list[int] = []

    def on_send(request, **_):
        sends.append(len(sends) + 1)
        if len(sends) <= count:
            body = b'{"__type":"ThrottlingException","message":"Rate exceeded"}'
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Body(body))
        return None  # on to moto

    engine._client.meta.events.register_first("before-send.textract.DetectDocumentText", on_send)
    return sends


@needs_fixtures
def test_a_throttled_call_is_retried_and_succeeds(moto_textract, tmp_path: Path) -> None:
    # Given Textract throttles the first request
    engine = TextractOcr.from_settings(Settings(aws_region="us-east-1", textract_max_attempts=3))
    sends = throttle_first(engine, count=1)
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")

    # When a page is read
    text = engine.read(image, page_number=1)

    # Then botocore's adaptive mode sent it again, and the page has Textract's text
    assert sends == [1, 2]
    assert_matches(text, moto_textract)


@needs_fixtures
def test_a_throttle_that_persists_is_a_retryable_error(moto_textract, tmp_path: Path) -> None:
    engine = TextractOcr.from_settings(Settings(aws_region="us-east-1", textract_max_attempts=1))
    sends = throttle_first(engine, count=100)
    image = tmp_path / "page-0001.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0")

    with pytest.raises(ThrottledError) as caught:
        engine.read(image, page_number=1)

    assert sends == [1, 2]  # the first try and one retry
    assert caught.value.retryable and caught.value.code == "throttled"


# --- through the real OCR stage ---------------------------------------------------------


def _record(stage: Stage, body: str, receive_count: int = 1) -> SQSRecord:
    msg = QueueMessage(stage.value, str(uuid.uuid4()), "rh", body, receive_count)
    arn = f"arn:aws:sqs:us-east-1:000000000000:docpipe-{stage.value}"
    return SQSRecord(sqs_event([msg], arn, "us-east-1")["Records"][0])


@needs_fixtures
def test_a_throttled_page_is_retried_by_the_queue_not_failed(tmp_path: Path) -> None:
    # Given a receipt photo preprocessed into one page that needs OCR, and Textract as the engine
    response = load(FIXTURES / "receipt.jpg.textract.json")
    textract = client()
    deps = Deps(
        settings=Settings(ocr_engine="textract"),
        queue=InMemoryQueue(),
        storage=InMemoryStorage(tmp_path),
        db=InMemoryDb(),
        ocr=TextractOcr(textract),
        encounters=OneEncounterPerDocument(),
    )
    sfid = submit(deps, FIXTURES / "receipt.jpg", uuid.uuid4())
    handle_record(Stage.PREPROCESS, _record(Stage.PREPROCESS, deps.queue.receive("preprocess")[0].body),
                  preprocess.run, deps)
    (body,) = [m.body for m in deps.queue.receive("ocr", max_messages=10)]

    with Stubber(textract) as stub:
        # When Textract is still throttling after botocore's retries
        stub.add_client_error("detect_document_text", service_error_code="ThrottlingException", http_status_code=400)
        with pytest.raises(ThrottledError):
            handle_record(Stage.OCR, _record(Stage.OCR, body, receive_count=1), ocr.run, deps)

        # Then the record failed for redelivery: the file waits in OCR, the run is a retry
        row = deps.db.get_shell_file(sfid)
        assert row.status == FileStatus.OCR and row.error_code is None
        assert (deps.db.runs[-1].outcome, deps.db.runs[-1].error_code) == ("retry", "throttled")
        assert deps.db.pages_without_text(sfid) == [1]

        # And when the queue delivers it again and Textract answers
        stub.add_response("detect_document_text", response, {"Document": {"Bytes": ANY}})
        handle_record(Stage.OCR, _record(Stage.OCR, body, receive_count=2), ocr.run, deps)
        stub.assert_no_pending_responses()

    (discover_body,) = deps.queue.bodies("discover")
    handle_record(Stage.DISCOVER, _record(Stage.DISCOVER, discover_body), discover.run, deps)
    assert deps.db.get_shell_file(sfid).status == FileStatus.COMPLETED
    (text,) = deps.db.page_texts(sfid)
    assert_matches(text, response)
    manifest = deps.db.manifest(sfid)
    assert manifest.page_engines == {1: "textract"}
    # And the page's DetectDocumentText is in the file's cost, beside the provider's (nothing here)
    assert (manifest.ocr_cost_usd, manifest.provider_cost_usd, manifest.cost_usd) == (0.0015, 0.0, 0.0015)
