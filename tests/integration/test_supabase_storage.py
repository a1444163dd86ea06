"""SupabaseStorage against the real Supabase Storage API server (supabase/storage v1.70.6,
../shared/tools/supabase-storage), sharing the session's embedded Postgres with our tables as
on a real project. No exchange here is written by hand: every answer is the server's own."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import tracemalloc
import uuid
from pathlib import Path

import httpx
import pytest

from shared.errors import (
    DependencyUnavailableError,
    FileTooLargeError,
    ObjectMissingError,
    PermanentError,
    RetryableError,
)
from shared.keys import original_key, page_key

pytest.importorskip("supabase")

from shared.adapters.supabase_storage import SupabaseStorage  # noqa: E402
from tests.fakes import is_stored  # noqa: E402

PATIENT = uuid.UUID("11111111-1111-4111-8111-111111111111")


def _key(kind: str = "original") -> str:
    fid = uuid.uuid4()
    return original_key(PATIENT, fid, "pdf") if kind == "original" else page_key(PATIENT, fid, 1)


@pytest.fixture
def server(supabase_storage):
    return supabase_storage.env


@pytest.fixture
def store(server):
    """An adapter on a fresh private bucket of its own."""
    adapter = SupabaseStorage(server["SUPABASE_URL"], server["SUPABASE_SERVICE_ROLE_KEY"], f"t-{uuid.uuid4().hex[:12]}")
    adapter.ensure_bucket()
    yield adapter
    adapter.close()


def _write(path: Path, size: int, seed: bytes = b"docpipe") -> str:
    """A file of ``size`` pseudo-random bytes (no compression can shortcut it); its sha256."""
    digest = hashlib.sha256()
    block = hashlib.sha256(seed).digest() * (1024 * 1024 // 32)
    with path.open("wb") as out:
        left = size
        n = 0
        while left:
            chunk = (n.to_bytes(8, "big") + block)[: min(left, len(block))]
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
            n += 1
    return digest.hexdigest()


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _object_info(server, bucket: str, key: str) -> httpx.Response:
    headers = {"apikey": server["SUPABASE_SERVICE_ROLE_KEY"], "authorization": f"Bearer {server['SUPABASE_SERVICE_ROLE_KEY']}"}
    return httpx.get(f"{server['SUPABASE_URL']}/storage/v1/object/info/{bucket}/{key}", headers=headers)


def assert_nothing_private_in(exc: BaseException, key: str, server) -> None:
    # Keys hold patient ids; Storage's own messages and the key are not ours to show.
    text = str(exc)
    assert str(PATIENT) not in text and key not in text and server["SUPABASE_SERVICE_ROLE_KEY"] not in text
    assert "Object not found" not in text


def test_upload_then_download_gives_the_same_bytes_and_content_type(store, server, tmp_path):
    # Given an original uploaded from a file named like a patient's own file
    original = tmp_path / "Jane Doe discharge.pdf"
    sha = _write(original, 3 * 1024 * 1024 + 17)
    key = _key()
    store.put_file(key, original, "application/pdf")
    # Then it exists, its content type is kept, and it downloads byte for byte
    assert is_stored(store, key) is True
    info = _object_info(server, store._bucket_name, key)
    assert info.status_code == 200, info.text
    assert info.json()["content_type"] == "application/pdf"
    assert info.json()["size"] == original.stat().st_size
    dest = tmp_path / "back"
    assert store.download(key, dest) == original.stat().st_size
    assert _sha(dest) == sha
    # The file's own name never reached the server: only the key names the object.
    assert "Jane" not in info.text


def test_put_bytes_overwrites_an_existing_object(store, tmp_path):
    # A redelivered message writes its page again: the second write wins, no 409.
    key = _key("page")
    store.put_bytes(key, b"\xff\xd8\xff\xe0 first", "image/jpeg")
    store.put_bytes(key, b"\xff\xd8\xff\xe0 second, longer", "image/jpeg")
    dest = tmp_path / "page.jpg"
    assert store.download(key, dest) == len(b"\xff\xd8\xff\xe0 second, longer")
    assert dest.read_bytes() == b"\xff\xd8\xff\xe0 second, longer"
    # And put_file over it too
    again = tmp_path / "again.jpg"
    again.write_bytes(b"\xff\xd8\xff\xe0 third")
    store.put_file(key, again, "image/jpeg")
    assert store.download(key, dest) == again.stat().st_size and dest.read_bytes() == again.read_bytes()


def test_a_missing_object_is_the_typed_permanent_error(store, server, tmp_path):
    key = _key()
    assert is_stored(store, key) is False
    with pytest.raises(ObjectMissingError) as caught:
        store.download(key, tmp_path / "nothing")
    assert type(caught.value) is ObjectMissingError and isinstance(caught.value, PermanentError)
    assert_nothing_private_in(caught.value, key, server)


def test_a_missing_bucket_is_retryable_not_a_missing_object(server, tmp_path):
    # The server answers 404 "Bucket not found": a deployment's mistake (STORAGE_BUCKET), so
    # files wait for the fix rather than fail for good as a missing original would.
    adapter = SupabaseStorage(server["SUPABASE_URL"], server["SUPABASE_SERVICE_ROLE_KEY"], f"absent-{uuid.uuid4().hex[:8]}")
    for call in (
        lambda: adapter.download(_key(), tmp_path / "nothing"),
        lambda: adapter.put_bytes(_key(), b"x", "image/jpeg"),
    ):
        with pytest.raises(DependencyUnavailableError, match="bucket not found"):
            call()


def test_a_200_mb_original_streams_both_ways_without_being_held_in_memory(store, tmp_path):
    original = tmp_path / "big.pdf"
    size = 200 * 1024 * 1024
    sha = _write(original, size)
    key = _key()
    # tracemalloc counts every Python allocation (httpx's chunks, storage3's body): the peak
    # while 200 MB goes up and comes back stays a few MB, so neither way holds the object.
    tracemalloc.start()
    try:
        store.put_file(key, original, "application/pdf")
        _, up_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        dest = tmp_path / "back.pdf"
        got = store.download(key, dest, max_bytes=size)
        _, down_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == size == dest.stat().st_size
    assert _sha(dest) == sha
    print(f"200 MB original: Python allocation peak {up_peak / 1e6:.1f} MB up, {down_peak / 1e6:.1f} MB down")
    assert up_peak < 8 * 1024 * 1024, f"upload peak {up_peak / 1e6:.1f} MB"
    assert down_peak < 8 * 1024 * 1024, f"download peak {down_peak / 1e6:.1f} MB"


def test_download_over_max_bytes_is_refused(store, tmp_path):
    key = _key()
    store.put_bytes(key, b"%PDF-1.7 " + b"0" * 4096, "application/pdf")
    with pytest.raises(FileTooLargeError) as caught:
        store.download(key, tmp_path / "x", max_bytes=1024)
    assert isinstance(caught.value, PermanentError)


def test_an_upload_over_the_buckets_size_limit_is_permanent(store, server, tmp_path):
    # The server's own 413 (a bucket with a 1 KB file_size_limit), not a written one.
    bucket = f"small-{uuid.uuid4().hex[:8]}"
    store._client.storage.create_bucket(bucket, options={"public": False, "file_size_limit": 1024})
    small = SupabaseStorage(server["SUPABASE_URL"], server["SUPABASE_SERVICE_ROLE_KEY"], bucket)
    key = _key()
    with pytest.raises(FileTooLargeError) as caught:
        small.put_bytes(key, b"%PDF-1.7 " + b"0" * 4096, "application/pdf")
    assert_nothing_private_in(caught.value, key, server)
    big = tmp_path / "big.pdf"
    _write(big, 64 * 1024)
    with pytest.raises(FileTooLargeError):
        small.put_file(key, big, "application/pdf")


def test_a_rejected_key_is_retryable_not_missing(store, server, tmp_path):
    # A wrong service-role key (rotated, or another project's). The server refuses the JWT on
    # writes (403 "signature verification failed") and, on reads, hides the bucket (HTTP 400,
    # statusCode 404 "Bucket not found"; measured). Neither is "no such object": the record is
    # retried while an operator fixes the key, instead of every file failing for good.
    key = _key()
    store.put_bytes(key, b"\xff\xd8 page", "image/jpeg")
    bad = SupabaseStorage(server["SUPABASE_URL"], server["SUPABASE_SERVICE_ROLE_KEY"][:-4] + "abcd", store._bucket_name)
    for call in (
        lambda: bad.download(key, tmp_path / "x"),
        lambda: bad.put_bytes(key, b"jpeg", "image/jpeg"),
    ):
        with pytest.raises(DependencyUnavailableError) as caught:
            call()
        assert "403" in str(caught.value) or "bucket not found" in str(caught.value), str(caught.value)
        assert_nothing_private_in(caught.value, key, server)


def test_the_anon_key_cannot_write_or_read_the_private_bucket(store, server, tmp_path):
    key = _key("page")
    store.put_bytes(key, b"\xff\xd8 page", "image/jpeg")
    anon = SupabaseStorage(server["SUPABASE_URL"], server["SUPABASE_ANON_KEY"], store._bucket_name)
    with pytest.raises(ObjectMissingError):  # a private object is "not found" to anon
        anon.download(key, tmp_path / "x")
    with pytest.raises(DependencyUnavailableError, match="403"):  # RLS refuses the insert
        anon.put_bytes(_key("page"), b"\xff\xd8", "image/jpeg")


def test_ensure_bucket_is_idempotent_and_private(store):
    store.ensure_bucket()
    store.ensure_bucket()
    bucket = store._client.storage.get_bucket(store._bucket_name)
    assert bucket.public is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_is_down_is_retryable(server, tmp_path):
    # Nothing listens on the port: connection refused, on every operation.
    down = SupabaseStorage(f"http://127.0.0.1:{_free_port()}", server["SUPABASE_SERVICE_ROLE_KEY"], "docpipe")
    page = tmp_path / "p.jpg"
    page.write_bytes(b"\xff\xd8")
    for call in (
        lambda: down.download(_key(), tmp_path / "x"),
        lambda: down.put_bytes(_key(), b"x", "image/jpeg"),
        lambda: down.put_file(_key(), page, "image/jpeg"),
        down.ensure_bucket,
    ):
        with pytest.raises(DependencyUnavailableError) as caught:
            call()
        assert isinstance(caught.value, RetryableError)


def test_a_server_that_hangs_times_out_as_retryable(server, tmp_path):
    # A listener that accepts and never answers (a wedged gateway): the client's timeout, retryable.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        hung = SupabaseStorage(f"http://127.0.0.1:{port}", server["SUPABASE_SERVICE_ROLE_KEY"], "docpipe", timeout_s=0.5)
        with pytest.raises(RetryableError, match="timed out"):
            hung.download(_key(), tmp_path / "x")
        with pytest.raises(RetryableError, match="timed out"):
            hung.put_bytes(_key(), b"jpeg", "image/jpeg")
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_the_pipeline_reads_what_it_wrote_through_storage(store, tmp_path):
    # Many page JPEGs under one file's prefix, as preprocess writes them: each lands, each reads.
    fid = uuid.uuid4()
    keys = [page_key(PATIENT, fid, n) for n in range(1, 21)]
    for n, key in enumerate(keys, 1):
        store.put_bytes(key, b"\xff\xd8\xff\xe0" + os.urandom(2000) + bytes([n]), "image/jpeg")
    for n, key in enumerate(keys, 1):
        dest = tmp_path / f"{n}.jpg"
        store.download(key, dest)
        assert dest.read_bytes()[-1] == n


# --- STORAGE_BACKEND=s3 against the same server's S3-protocol endpoint ------------------------


def _s3_settings(server, bucket: str):
    from shared.settings import Settings

    return Settings(
        storage_backend="s3",
        storage_bucket=bucket,
        s3_endpoint_url=server["SUPABASE_S3_ENDPOINT"],
        s3_access_key_id=server["SUPABASE_S3_ACCESS_KEY_ID"],
        s3_secret_access_key=server["SUPABASE_S3_SECRET_ACCESS_KEY"],
        s3_region=server["SUPABASE_S3_REGION"],
        s3_force_path_style=True,
    )


@pytest.fixture
def s3_store(server):
    """S3Storage as bootstrap builds it for STORAGE_BACKEND=s3 pointed at Supabase."""
    from shared.adapters.aws import S3Storage
    from shared.bootstrap import _storage

    adapter = _storage(_s3_settings(server, f"s3-{uuid.uuid4().hex[:12]}"))
    assert isinstance(adapter, S3Storage)
    adapter.ensure_bucket()
    return adapter


def _raw_client(server):
    """A plain boto3 client, without docpipe's hooks: to show each quirk is real."""
    import boto3
    import botocore.config

    return boto3.client(
        "s3", endpoint_url=server["SUPABASE_S3_ENDPOINT"], region_name=server["SUPABASE_S3_REGION"],
        aws_access_key_id=server["SUPABASE_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=server["SUPABASE_S3_SECRET_ACCESS_KEY"],
        config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_s3_protocol_round_trip_multipart_and_overwrite(s3_store, server, tmp_path):
    original = tmp_path / "scan.pdf"
    sha = _write(original, 20 * 1024 * 1024 + 5)  # over boto3's 8 MB threshold: a multipart upload
    key = _key()
    s3_store.put_file(key, original, "application/pdf")
    assert is_stored(s3_store, key) is True
    dest = tmp_path / "back"
    assert s3_store.download(key, dest) == original.stat().st_size and _sha(dest) == sha
    # Written over S3, read over the Storage API: one bucket, two protocols.
    info = _object_info(server, s3_store._bucket, key)
    assert info.status_code == 200 and info.json()["content_type"] == "application/pdf"
    page = _key("page")
    s3_store.put_bytes(page, b"\xff\xd8 one", "image/jpeg")
    s3_store.put_bytes(page, b"\xff\xd8 two", "image/jpeg")
    s3_store.download(page, dest)
    assert dest.read_bytes() == b"\xff\xd8 two"
    with pytest.raises(FileTooLargeError):
        s3_store.download(key, tmp_path / "x", max_bytes=1024)


def test_s3_quirk_error_xml_namespace_a_missing_object_is_still_missing(s3_store, server, tmp_path):
    import botocore.exceptions

    key = _key()
    # The quirk: without the before-parse hook, botocore reads no error code at all.
    with pytest.raises(botocore.exceptions.ClientError) as raw:
        _raw_client(server).get_object(Bucket=s3_store._bucket, Key=key)
    assert raw.value.response["Error"].get("Code", "") == "" and raw.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # With it: NoSuchKey, so the typed permanent error.
    with pytest.raises(ObjectMissingError) as caught:
        s3_store.download(key, tmp_path / "x")
    assert type(caught.value) is ObjectMissingError and isinstance(caught.value, PermanentError)
    assert key not in str(caught.value)
    with pytest.raises(botocore.exceptions.ClientError) as parsed:
        s3_store._client.get_object(Bucket=s3_store._bucket, Key=key)
    assert parsed.value.response["Error"]["Code"] == "NoSuchKey"


def test_s3_quirk_delete_objects_needs_an_xml_content_type(s3_store, server):
    import botocore.exceptions

    keys = [_key("page") for _ in range(3)]
    for key in keys:
        s3_store.put_bytes(key, b"\xff\xd8", "image/jpeg")
    objects = {"Objects": [{"Key": k} for k in keys]}
    # The quirk: a plain client's batch delete is refused.
    with pytest.raises(botocore.exceptions.ClientError):
        _raw_client(server).delete_objects(Bucket=s3_store._bucket, Delete=objects)
    assert all(is_stored(s3_store, k) for k in keys)
    # The client S3Storage builds sends it as XML, and the objects go.
    s3_store._client.delete_objects(Bucket=s3_store._bucket, Delete=objects)
    assert not any(is_stored(s3_store, k) for k in keys)


def test_s3_protocol_with_a_wrong_secret_is_retryable(server, tmp_path):
    from pydantic import SecretStr

    settings = _s3_settings(server, "docpipe").model_copy(update={"s3_secret_access_key": SecretStr("not-the-secret")})
    from shared.bootstrap import _storage

    wrong = _storage(settings)
    with pytest.raises(DependencyUnavailableError):
        wrong.put_bytes(_key("page"), b"\xff\xd8", "image/jpeg")
