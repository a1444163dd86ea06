"""Local servers the tests start for the production configuration: a Textract endpoint that
answers with a real recorded response, an OpenAI-compatible endpoint that answers any
window in the schema the request gives, and the real Supabase Storage server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
TEXTRACT_FIXTURES = SHARED_DIR / "fixtures" / "textract"
SUPABASE_STORAGE_TOOL = SHARED_DIR / "tools" / "supabase-storage"


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.requests: list[dict] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str, headers, body: dict) -> tuple[int, dict]:
        raise NotImplementedError

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                with outer._lock:
                    outer.requests.append({"path": self.path, "target": self.headers.get("X-Amz-Target"), "body": body})
                status, reply = outer.answer(self.path, self.headers, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1" if outer.amz else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    amz = False

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class RecordedTextract(_Server):
    """Textract's JSON protocol: every DetectDocumentText gets the same recorded answer, and
    every AnalyzeDocument (when ``analyzed_file`` is given) the recorded AnalyzeDocument one."""

    amz = True

    def __init__(self, response_file: Path, analyzed_file: Path | None = None) -> None:
        super().__init__()
        self.response = _recorded(response_file)
        self.analyzed = _recorded(analyzed_file) if analyzed_file else None

    def answer(self, path, headers, body):
        target = headers.get("X-Amz-Target")
        if "Bytes" not in body.get("Document", {}):
            return 400, {"__type": "InvalidParameterException", "message": "expected a Document with Bytes"}
        if target == "Textract.DetectDocumentText":
            return 200, self.response
        if target == "Textract.AnalyzeDocument" and self.analyzed is not None and body.get("FeatureTypes"):
            return 200, self.analyzed
        return 400, {"__type": "InvalidParameterException", "message": f"unexpected {target}"}

    def lines(self) -> list[str]:
        return [b["Text"] for b in self.response["Blocks"] if b["BlockType"] == "LINE"]


def _recorded(path: Path) -> dict:
    response = json.loads(Path(path).read_text())
    response.pop("ResponseMetadata", None)
    return response


class SchemaAnsweringOpenAi(_Server):
    """/v1/chat/completions: for every window, one encounter over all its pages, filled in from
    the JSON schema the request sends (so it follows the provider's schema as it changes)."""

    def __init__(self, usage: tuple[int, int] = (1200, 150)) -> None:
        super().__init__()
        self.usage = usage

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def answer(self, path, headers, body):
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": "not found"}}
        schema = body["response_format"]["json_schema"]["schema"]
        user = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
        pages = [int(n) for n in re.findall(r'<page number="(\d+)"', user)] or [1]
        content = _fill(schema, schema.get("$defs", {}), pages, "root")
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(content), "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": self.usage[0],
                "completion_tokens": self.usage[1],
                "total_tokens": sum(self.usage),
            },
        }


def _fill(schema: dict, defs: dict, pages: list[int], name: str):
    if "$ref" in schema:
        return _fill(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, pages, name)
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        if name in ("date_start", "date_end"):
            return "2024-03-05"
        return None if len(options) < len(schema["anyOf"]) else _fill(options[0], defs, pages, name)
    if "enum" in schema:
        values = schema["enum"]
        for preferred in ("outpatient_visit", "happened"):
            if preferred in values:
                return preferred
        return values[0]
    kind = schema.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        if name in ("date_start", "date_end"):
            return "2024-03-05"
        kind = next((k for k in kind if k != "null"), None)
        if kind is None or len(schema["type"]) > 1 and name not in ("facility",):
            return None
    if kind == "object":
        props = schema.get("properties", {})
        if set(props) >= {"first_page", "last_page"}:
            return {"first_page": pages[0], "last_page": pages[-1], **{
                k: _fill(v, defs, pages, k) for k, v in props.items() if k not in ("first_page", "last_page")}}
        return {k: _fill(v, defs, pages, k) for k, v in props.items()}
    if kind == "array":
        if name in ("encounters", "page_ranges"):
            return [_fill(schema["items"], defs, pages, name)]
        return []
    if kind == "boolean":
        return False
    if kind == "integer":
        return pages[0]
    if kind == "number":
        return 0.9
    if kind == "string":
        return "Local Clinic" if name == "facility" else "docpipe test"
    return None


class SupabaseStorageServer:
    """The real Supabase Storage API server (../shared/tools/supabase-storage), on a database."""

    def __init__(self, database_url: str, data_dir: Path, port: int | None = None) -> None:
        self.database_url = database_url
        self.data_dir = Path(data_dir)
        self.port = port
        self.env: dict[str, str] = {}
        self._proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return (SUPABASE_STORAGE_TOOL / "start").is_file() and _which("npm")

    def start(self, timeout_s: float = 240.0) -> SupabaseStorageServer:
        from shared.runtime.localstack import free_port

        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "server.log", "w")  # noqa: SIM115 - the server's lifetime
        self._proc = subprocess.Popen(
            [str(SUPABASE_STORAGE_TOOL / "start"), self.database_url, str(self.data_dir / "objects"), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        for line in self._proc.stdout:
            for key, value in re.findall(r"(\w+)=(\S+)", line if line.startswith("export") else ""):
                self.env[key] = value.strip("'\"")
            if line.strip() == "ready":
                threading.Thread(target=self._proc.stdout.read, daemon=True).start()  # keep draining
                return self
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("the Supabase Storage server did not start: " + (self.data_dir / "server.log").read_text()[-800:])

    def jwt(self, role: str, sub: str | None = None, expires_in_s: int = 3600) -> str:
        """A JWT as Supabase Auth issues it (HS256, signed with this server's secret): role
        ``authenticated`` and ``sub`` = the user's id for a signed-in patient."""
        now = int(time.time())
        claims = {"role": role, "iat": now, "exp": now + expires_in_s} | ({"sub": str(sub)} if sub else {})
        return sign_hs256(claims, self.env["SUPABASE_JWT_SECRET"])

    def stop(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
            self._proc = None


def sign_hs256(claims: dict, secret: str) -> str:
    """A compact JWS (HS256) with the standard library only."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
