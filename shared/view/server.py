"""The review page's HTTP server: ``http.server`` from the standard library, GET only.

Routes:
  /                              the files table (?status=..., ?error_code=...)
  /files/{uuid}                  one file's page
  /files/{uuid}/pages/{n}.jpg    a page image, looked up through the file's own rows
  /api/files/{uuid}              what the file's page shows, as JSON
  /static/view.css|view.js       the page's only assets

A file id that is not a UUID, or not in the database, is a 404; a page image is served only
for a page row of a file in the database, by the storage key that row holds (never a key from
the URL). Requests must name this server in their Host header (no DNS rebinding from a page
elsewhere). Each request logs one line: method, route, file id, status, milliseconds.
"""

from __future__ import annotations

import http.server
import json
import re
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from pathlib import Path

from shared.errors import ObjectMissingError
from shared.ports import Database, Storage
from shared.view import DEFAULT_HOST, DEFAULT_PORT, data, html

STATIC_DIR = Path(__file__).with_name("static")
_STATIC = {"view.css": "text/css; charset=utf-8", "view.js": "text/javascript; charset=utf-8"}
_FILE = re.compile(r"^/(?:api/)?files/([^/]+)(?:/pages/(\d{1,5})\.jpg)?/?$")
_HEADERS = {
    # Scripts and everything else from this server only; inline style attributes place the boxes.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _NotFound(Exception):
    pass


class ViewServer:
    """Serves the review page for ``db`` and ``storage`` until ``stop()`` (or Ctrl-C in
    ``serve_forever``). ``port=0`` picks a free port; ``url`` says which."""

    def __init__(self, db: Database, storage: Storage, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 log=None) -> None:
        self.db, self.storage = db, storage
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        handler = type("Handler", (_Handler,), {"view": self})
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def allowed_hosts(self) -> set[str] | None:
        if self.host in ("0.0.0.0", "::"):
            return None  # bound to every interface on purpose: any name may reach it
        names = {self.host, "localhost"} | ({"127.0.0.1", "[::1]"} if self.host in ("127.0.0.1", "::1") else set())
        return {f"{n}:{self.port}" for n in names}

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def start(self) -> ViewServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="docpipe-view", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(http.server.BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "docpipe-view"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    # http.server logs the request line and error details to stderr; a path or a query could
    # carry anything, so its log methods are silenced and _log writes ids and codes only.
    def log_message(self, format, *args) -> None:
        pass

    def _log(self, route: str, status: int, started: float, file_id: uuid.UUID | None = None) -> None:
        ms = (time.perf_counter() - started) * 1000
        self.view.log(f"view {self.command} {route} {status} {ms:.0f}ms" + (f" shell_file_id={file_id}" if file_id else ""))

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        started = time.perf_counter()
        route, file_id = "?", None
        try:
            allowed = self.view.allowed_hosts()
            if allowed is not None and self.headers.get("Host") not in allowed:
                route = "(bad host)"
                self._send(421, b"misdirected request\n", "text/plain; charset=utf-8")
                return
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            path = url.path
            if path == "/":
                route = "/"
                status = _one(query, "status")
                status = status if status in data.STATUSES else None
                error_code = _one(query, "error_code")
                body = html.files_page(
                    data.list_files(self.view.db, status, error_code), data.status_counts(self.view.db), status,
                    error_code,
                )
                self._send(200, body.encode(), "text/html; charset=utf-8")
            elif path.startswith("/static/") and path[len("/static/"):] in _STATIC:
                route = path
                name = path[len("/static/"):]
                self._send(200, (STATIC_DIR / name).read_bytes(), _STATIC[name])
            elif match := _FILE.match(path):
                page = match.group(2)
                route = "/api/files/{id}" if path.startswith("/api/") else "/files/{id}"
                if page is not None:
                    route = "/files/{id}/pages/{n}.jpg"
                file_id = _file_id(match.group(1))
                if page is not None:
                    self._send(200, self._page_image(file_id, int(page)), "image/jpeg")
                    return
                detail = data.file_detail(self.view.db, file_id)
                if detail is None:
                    raise _NotFound
                if path.startswith("/api/"):
                    self._send(200, json.dumps(detail, default=str).encode(), "application/json")
                else:
                    start = _one(query, "start") or "1"
                    start = int(start) if start.isdigit() and len(start) < 7 else 1
                    self._send(200, html.file_page(detail, start).encode(), "text/html; charset=utf-8")
            else:
                route = "(unknown)"
                raise _NotFound
        except _NotFound:
            self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception as exc:  # noqa: BLE001 - one bad request must not stop the server
            # The class name only: an exception's message may quote a row.
            self.view.log(f"view error {type(exc).__name__} at {_where(exc)}")
            self._send(500, b"internal error\n", "text/plain; charset=utf-8")
        finally:
            self._log(route, getattr(self, "_status", 0), started, file_id)

    def _page_image(self, file_id: uuid.UUID, number: int) -> bytes:
        page = next((p for p in self.view.db.pages(file_id) if p.page_number == number), None)
        if page is None:
            raise _NotFound
        with tempfile.TemporaryDirectory(prefix="docpipe-view-") as tmp:
            dest = Path(tmp) / "page.jpg"
            try:
                self.view.storage.download(page.storage_key, dest)
            except ObjectMissingError:
                raise _NotFound from None
            return dest.read_bytes()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self._status = status
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in _HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _one(query: dict, name: str) -> str | None:
    values = query.get(name) or [None]
    return values[0] or None


def _file_id(text: str) -> uuid.UUID:
    try:
        value = uuid.UUID(text)
    except ValueError:
        raise _NotFound from None
    if str(value) != text.lower():  # only the canonical spelling: no braces, urn: or bare hex
        raise _NotFound
    return value


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def open_data_dir(data_dir: Path):
    """The database and storage that `docpipe process --data-dir DIR` left behind: its embedded
    PostgreSQL (started again if it is not running) and its local storage directory. The
    connection is read-only at the server (``default_transaction_read_only``). Returns (db,
    storage, close)."""
    import warnings

    from shared.adapters.aws import LocalStorage
    from shared.adapters.postgres import PostgresDb

    data_dir = Path(data_dir).resolve()
    if not (data_dir / "pg").is_dir():
        # pgserver would create an empty cluster there: a write, and a page with nothing on it.
        raise FileNotFoundError(f"no docpipe data in {data_dir} (no pg/): run `docpipe process --data-dir {data_dir}`")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver
    pg = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")
    uri = pg.get_uri()
    uri += ("&" if "?" in uri else "?") + "options=" + urllib.parse.quote("-c default_transaction_read_only=on")
    db = PostgresDb(uri)

    def close() -> None:
        db.close()
        pg.cleanup()

    return db, LocalStorage(data_dir / "storage"), close


def open_configured(settings):
    """The database and storage the environment's settings name, as the worker builds them."""
    from shared.bootstrap import build_deps

    deps = build_deps(settings)  # its parts are built on first use: only the database and storage here
    return deps.db, deps.storage, getattr(deps.db, "close", lambda: None)
