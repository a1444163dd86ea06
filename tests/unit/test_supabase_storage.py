"""SupabaseStorage on what the real Storage server cannot be made to do (its behaviour otherwise is
tested against the server itself in tests/integration/test_supabase_storage.py): a 429 with
Retry-After and a 503 page, both from Supabase's API gateway in front of Storage, replayed
through an httpx transport; and settings handling that needs no server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from shared.adapters.supabase_storage import SupabaseStorage
from shared.errors import DependencyUnavailableError, RetryableError, ThrottledError
from shared.keys import original_key

pytest.importorskip("supabase")

CASSETTES = json.loads((Path(__file__).parent / "cassettes" / "supabase_storage.json").read_text())
URL = "https://abcdefghijklmnop.supabase.co"
KEY = "service-role-key-for-tests"
PATIENT = uuid.UUID("11111111-1111-4111-8111-111111111111")
FILE = uuid.UUID("22222222-2222-4222-8222-222222222222")
ORIGINAL = original_key(PATIENT, FILE, "pdf")


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
    assert "503" in str(caught.value) and isinstance(caught.value, RetryableError)


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
