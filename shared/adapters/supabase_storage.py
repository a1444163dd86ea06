"""``SupabaseStorage``: the Storage port over Supabase Storage's own API, through the
``supabase`` package, for deployments that have a Supabase project and no S3 keys.

The service-role key authenticates every request (Storage's RLS does not apply to it), and
the bucket is STORAGE_BUCKET. Uploads and bucket provisioning go through
``supabase``'s storage client; downloads are streamed through the same HTTP client, URL and
headers, because the package's ``download()`` returns the whole object as ``bytes`` and an
original may be hundreds of megabytes (originals are never held in memory whole).

Vendor errors become ours, raised from the original: a missing object ->
``ObjectMissingError``; a missing bucket -> ``DependencyUnavailableError``; 429 -> ``ThrottledError``; timeouts, connection trouble, 5xx and
anything unexpected -> ``DependencyUnavailableError``; an object over Storage's size limit ->
``FileTooLargeError``. Their messages carry the operation and Storage's status and error code,
never a key (keys hold patient ids) nor Storage's own message text.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx

from shared.errors import (
    DependencyUnavailableError,
    FileTooLargeError,
    ObjectMissingError,
    PipelineError,
    ThrottledError,
)
from shared.ports import Storage

_CHUNK = 1024 * 1024
_LIST_PAGE = 1000  # entries per list request, keys per remove request
_NOT_FOUND = frozenset({"not_found", "NoSuchKey", "Object not found"})
# A missing bucket is a deployment's mistake (STORAGE_BUCKET, or a project reset), not a missing
# object: retryable, so files wait for the fix instead of failing for good.
_NO_BUCKET = frozenset({"NoSuchBucket", "Bucket not found"})


class SupabaseStorage(Storage):
    """One Supabase Storage bucket, addressed by the keys docpipe builds from ids."""

    def __init__(
        self,
        url: str,
        service_role_key: str,
        bucket: str,
        timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # Imported here: the package (auth, realtime, PostgREST clients) is loaded only by
        # deployments that choose this backend.
        from supabase import ClientOptions, create_client

        if not url or not service_role_key:
            raise DependencyUnavailableError("SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY must both be set")
        # One HTTP client for everything this adapter sends; ``transport`` lets tests replay
        # recorded Storage exchanges. http2=False: one short request at a time, and h2 adds
        # nothing but another connection state machine to a warm Lambda.
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            follow_redirects=True,
            transport=transport,
        )
        options = ClientOptions(httpx_client=self._http, auto_refresh_token=False, persist_session=False)
        try:
            self._client = create_client(url, service_role_key, options)
        except Exception as exc:  # supabase raises its own exception for a malformed URL or key
            raise DependencyUnavailableError(f"supabase client: {type(exc).__name__}") from exc
        self._bucket_name = bucket
        self._bucket = self._client.storage.from_(bucket)

    def close(self) -> None:
        self._http.close()

    # --- the port --------------------------------------------------------------------

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        # A path (not an open file): storage3 opens it, streams it as the multipart body
        # and closes it.
        self._upload("upload", key, Path(path), content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._upload("put object", key, bytes(data), content_type)

    def download(self, key: str, dest: Path, max_bytes: int | None = None) -> int:
        url = f"{self._client.storage_url}object/{quote(self._bucket_name, safe='')}/{quote(key)}"
        size = 0
        try:
            with self._http.stream("GET", url, headers=self._client.options.headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _from_response("download", response.status_code, response.content, response.headers)
                declared = response.headers.get("content-length")
                if max_bytes is not None and declared is not None and int(declared) > max_bytes:
                    raise FileTooLargeError(f"file is {int(declared)} bytes; the limit is {max_bytes}")
                with Path(dest).open("wb") as out:
                    for chunk in response.iter_bytes(_CHUNK):
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise FileTooLargeError(f"file is over the limit of {max_bytes} bytes")
                        out.write(chunk)
        except httpx.HTTPError as exc:
            raise _from_transport("download", exc) from exc
        return size

    def list_keys(self, prefix: str) -> list[str]:
        from storage3.exceptions import StorageApiError

        # Storage lists one folder at a time (a sub-folder is an entry without an id).
        keys: list[str] = []
        folders = [prefix.rstrip("/")]
        try:
            while folders:
                folder = folders.pop()
                offset = 0
                while True:
                    entries = self._bucket.list(
                        folder, {"limit": _LIST_PAGE, "offset": offset, "sortBy": {"column": "name", "order": "asc"}}
                    )
                    for entry in entries:
                        path = f"{folder}/{entry['name']}"
                        (keys if entry.get("id") is not None else folders).append(path)
                    if len(entries) < _LIST_PAGE:
                        break
                    offset += _LIST_PAGE
        except StorageApiError as exc:
            raise _from_api_error("list", exc) from exc
        except httpx.HTTPError as exc:
            raise _from_transport("list", exc) from exc
        return keys

    def delete_keys(self, keys: list[str]) -> None:
        from storage3.exceptions import StorageApiError

        for start in range(0, len(keys), _LIST_PAGE):
            try:
                self._bucket.remove(keys[start : start + _LIST_PAGE])
            except StorageApiError as exc:
                raise _from_api_error("delete", exc) from exc
            except httpx.HTTPError as exc:
                raise _from_transport("delete", exc) from exc

    # --- provisioning ----------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket, private, if it does not exist (idempotent)."""
        from storage3.exceptions import StorageApiError

        try:
            self._client.storage.get_bucket(self._bucket_name)
            return
        except StorageApiError as exc:
            if not _is_not_found(exc.status, exc.code):
                raise _from_api_error("get bucket", exc) from exc
        except httpx.HTTPError as exc:
            raise _from_transport("get bucket", exc) from exc
        try:
            self._client.storage.create_bucket(self._bucket_name, options={"public": False})
        except StorageApiError as exc:
            if str(exc.status) != "409" and exc.code not in ("Duplicate", "BucketAlreadyExists"):
                raise _from_api_error("create bucket", exc) from exc
        except httpx.HTTPError as exc:
            raise _from_transport("create bucket", exc) from exc

    # --- internals -------------------------------------------------------------------

    def _upload(self, what: str, key: str, body: Path | bytes, content_type: str) -> None:
        from storage3.exceptions import StorageApiError

        # upsert: every write is idempotent; a redelivered message overwrites its own objects.
        options = {"content-type": content_type, "upsert": "true"}
        try:
            self._bucket.upload(key, body, options)
        except StorageApiError as exc:
            raise _from_api_error(what, exc) from exc
        except httpx.HTTPError as exc:
            raise _from_transport(what, exc) from exc


def _is_not_found(status, code) -> bool:
    return str(status) == "404" or code in _NOT_FOUND or code in _NO_BUCKET


def _classify(what: str, status, code: str | None, retry_after: str | None = None) -> PipelineError:
    label = f"supabase storage {what}: {status}" + (f" {code}" if code else "")
    if code in _NO_BUCKET:
        return DependencyUnavailableError(f"supabase storage {what}: {status} bucket not found")
    if _is_not_found(status, code):
        return ObjectMissingError(f"supabase storage {what}: object not found")
    if str(status) == "429":
        try:
            hint = float(retry_after) if retry_after else None
        except ValueError:
            hint = None
        return ThrottledError(label, retry_after_s=hint)
    if str(status) == "413" or code in ("EntityTooLarge", "Payload too large"):
        return FileTooLargeError(f"supabase storage {what}: object is larger than Storage accepts")
    return DependencyUnavailableError(label)


def _from_api_error(what: str, exc) -> PipelineError:
    """storage3's ``StorageApiError`` (status and code parsed from Storage's JSON body)."""
    return _classify(what, exc.status, exc.code)


def _from_response(what: str, status_code: int, body: bytes, headers) -> PipelineError:
    """A raw error response: Storage answers ``{"statusCode": "404", "error": "not_found",
    "message": ...}`` (older servers with HTTP 400) or ``{"code": ..., "message": ...}``."""
    status, code = status_code, None
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict):
            status = parsed.get("statusCode") or status_code
            code = parsed.get("error") or parsed.get("code")
    except ValueError:
        pass
    return _classify(what, status, code, headers.get("retry-after"))


def _from_transport(what: str, exc: httpx.HTTPError) -> PipelineError:
    if isinstance(exc, httpx.TimeoutException):
        return DependencyUnavailableError(f"supabase storage {what}: timed out")
    return DependencyUnavailableError(f"supabase storage {what}: {type(exc).__name__}")
