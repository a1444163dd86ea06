"""SupabaseStorage against recorded Supabase Storage HTTP exchanges, replayed through an httpx
transport: the adapter and the ``supabase`` package run for real, only the server is a replay."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from shared.adapters.supabase_storage import SupabaseStorage
from shared.errors import (
    DependencyUnavailableError,
    FileTooLargeError,
    OriginalMissingError,
    PermanentError,
    RetryableError,
    ThrottledError,
)
from shared.keys import original_key, page_key

pytest.importorskip("supabase")

CASSETTES = json.loads((Path(__file__).parent / "cassettes" / "supabase_storage.json").read_text())
URL = "https://abcdefghijklmnop.supabase.co"
KEY = "service-role-key-for-tests"
PATIENT = uuid.UUID("11111111-1111-4111-8111-111111111111")
FILE = uuid.UUID("22222222-2222-4222-8222-222222222222")
ORIGINAL = original_key(PATIENT, FILE, "pdf")
PAGE = page_key(PATIENT, FILE, 1)


class Replay(httpx.BaseTransport):
    """Answers each request with the next recorded exchange, after checking that the request
    is the recorded one and carries the service-role key as Storage expects it."""

    def __init__(self, name: str) -> None:
        self.exchanges = list(CASSETTES[name])
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert self.exchanges, f"unexpected request {request.method} {request.url.path}"
        recorded = self.exchanges.pop(0)
        want, got = recorded["request"], request
        body = request.read()
        self.requests.append(request)
        assert got.method == want["method"]
        assert got.url.path == "/storage/v1/" + want["path"]
        assert got.headers["apikey"] == KEY and got.headers["authorization"] == f"Bearer {KEY}"
        for name, value in want.get("headers", {}).items():
            assert got.headers.get(name) == value
        if "form_content_type" in want:
            assert got.headers["content-type"].startswith("multipart/form-data")
            assert f"Content-Type: {want['form_content_type']}".encode() in body
        if "json" in want:
            assert json.loads(body) == want["json"]
        answer = recorded["response"]
        if "json" in answer:
            content = json.dumps(answer["json"]).encode()
        elif "body_repeat" in answer:
            chunk = answer["body_repeat"]["chunk"].encode()
            size = answer["body_repeat"]["bytes"]
            content = (chunk * (size // len(chunk) + 1))[:size]
        else:
            content = answer.get("text", "").encode()
        return httpx.Response(answer["status"], headers=answer["headers"], content=content)

    def done(self) -> bool:
        return not self.exchanges


def storage(name: str) -> tuple[SupabaseStorage, Replay]:
    replay = Replay(name)
    return SupabaseStorage(URL, KEY, "docpipe", transport=replay), replay


def assert_no_key_in(exc: BaseException) -> None:
    # Keys hold patient ids; Storage's own messages are not ours to show.
    text = str(exc)
    assert str(PATIENT) not in text and "Object not found" not in text and KEY not in text


def test_put_bytes_upserts_a_page_image():
    store, replay = storage("upload_page")
    store.put_bytes(PAGE, b"\xff\xd8\xff\xe0 jpeg", "image/jpeg")
    assert replay.done()


def test_put_file_uploads_the_original(tmp_path):
    original = tmp_path / "scan.pdf"
    original.write_bytes(b"%PDF-1.7\n" + b"0" * 4096)
    store, replay = storage("upload_original")
    store.put_file(ORIGINAL, original, "application/pdf")
    assert replay.done()
    # The file's own name never leaves the machine: the multipart part is named after the key.
    assert b"scan.pdf" not in replay.requests[0].read()


def test_an_object_over_storages_limit_is_permanent(tmp_path):
    store, _ = storage("upload_too_large")
    with pytest.raises(FileTooLargeError) as caught:
        store.put_bytes(ORIGINAL, b"%PDF-1.7", "application/pdf")
    assert_no_key_in(caught.value)


def test_download_streams_to_a_file(tmp_path):
    store, replay = storage("download_original")
    dest = tmp_path / "original"
    size = store.download(ORIGINAL, dest, max_bytes=10 * 1024 * 1024)
    assert size == 2621440 == dest.stat().st_size
    assert dest.read_bytes().startswith(b"%PDF-1.7 docpipe ")
    assert replay.done()


def test_download_refuses_an_object_over_the_limit(tmp_path):
    store, _ = storage("download_original")
    with pytest.raises(FileTooLargeError):
        store.download(ORIGINAL, tmp_path / "original", max_bytes=1024 * 1024)


@pytest.mark.parametrize("cassette", ["download_missing_legacy", "download_missing"])
def test_a_missing_original_is_permanent(tmp_path, cassette):
    store, _ = storage(cassette)
    with pytest.raises(OriginalMissingError) as caught:
        store.download(ORIGINAL, tmp_path / "original")
    assert isinstance(caught.value, PermanentError)
    assert_no_key_in(caught.value)


def test_throttling_is_retryable_with_storages_hint(tmp_path):
    store, _ = storage("download_throttled")
    with pytest.raises(ThrottledError) as caught:
        store.download(ORIGINAL, tmp_path / "original")
    assert caught.value.retry_after_s == 7.0
    assert_no_key_in(caught.value)


def test_a_storage_outage_is_retryable(tmp_path):
    store, _ = storage("download_unavailable")
    with pytest.raises(DependencyUnavailableError) as caught:
        store.download(ORIGINAL, tmp_path / "original")
    assert "503" in str(caught.value)


def test_a_timeout_is_retryable(tmp_path):
    class TimesOut(httpx.BaseTransport):
        def handle_request(self, request):
            raise httpx.ReadTimeout("timed out", request=request)

    store = SupabaseStorage(URL, KEY, "docpipe", transport=TimesOut())
    with pytest.raises(RetryableError, match="timed out"):
        store.download(ORIGINAL, tmp_path / "original")
    with pytest.raises(RetryableError, match="timed out"):
        store.put_bytes(PAGE, b"jpeg", "image/jpeg")


def test_exists():
    assert storage("exists_yes")[0].exists(PAGE) is True
    assert storage("exists_no")[0].exists(PAGE) is False
    # A key Storage rejects is not "no such object": it raises, and the record is retried.
    with pytest.raises(DependencyUnavailableError) as caught:
        storage("exists_bad_key")[0].exists(PAGE)
    assert "403" in str(caught.value)


def test_ensure_bucket_creates_a_private_bucket_once():
    store, replay = storage("ensure_bucket_creates")
    store.ensure_bucket()
    assert replay.done()
    store, replay = storage("ensure_bucket_exists")
    store.ensure_bucket()
    assert replay.done()


def test_bootstrap_selects_supabase_storage(tmp_path):
    from shared.bootstrap import build_deps
    from shared.settings import Settings
    from tests.fakes import CannedOcr, InMemoryDb, InMemoryQueue, OneEncounterPerDocument

    settings = Settings(
        storage_backend="supabase",
        supabase_url=URL,
        supabase_service_role_key=KEY,
        storage_bucket="docpipe",
    )
    deps = build_deps(
        settings, queue=InMemoryQueue(), db=InMemoryDb(), ocr=CannedOcr(), encounters=OneEncounterPerDocument()
    )
    assert isinstance(deps.storage, SupabaseStorage)
    assert KEY not in repr(settings)


def test_missing_configuration_names_the_variables():
    with pytest.raises(DependencyUnavailableError, match="SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"):
        SupabaseStorage("", "", "docpipe")
