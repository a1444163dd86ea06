"""``PostgresDb``: the Database port over psycopg 3.

Built for Supabase's transaction pooler as much as for a direct connection: autocommit,
explicit short transactions, and no server-side prepared statements
(``prepare_threshold=None``), which a transaction-mode pooler cannot keep across
transactions. One connection per process; it reconnects after the server went away.

It is long (~550 lines) because it is the whole Database port: every statement the stages
run is here, each a short method with its SQL beside it, so a reader sees all the SQL in one
place and the conditional updates that make the stages idempotent side by side.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.adapters import migrations
from shared.adapters.migrations import MigrationReport
from shared.errors import DependencyUnavailableError, FileDeletedError, PageImageMissingError
from shared.models import (
    Discovery,
    Erasure,
    FileStatus,
    Manifest,
    PageText,
    PipelineRun,
    ShellFile,
    ShellFilePage,
    Stage,
)
from shared.ports import Database

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
_MIGRATION_LOCK = 0x646F6370  # "docp": one migrator at a time

_ACTIVE = ("queued", "preprocessing", "ocr", "discovering")
# Where a file is while a stage's message still has work to do (a dead letter of that stage
# may fail it only then).
_AT_STAGE = {
    Stage.PREPROCESS: "f.status in ('queued', 'preprocessing')",
    Stage.OCR: "f.status in ('preprocessing', 'ocr') and exists (select 1 from shell_file_pages p where p.shell_file_id = f.id"
    " and not exists (select 1 from ocr_text_extractions t where t.shell_file_id = p.shell_file_id"
    " and t.page_number = p.page_number))",
    Stage.DISCOVER: "f.status = 'discovering'",
}


_UPSERT_PAGE = (
    "insert into shell_file_pages (shell_file_id, page_number, storage_key, width, height, text_source)"
    " values (%s, %s, %s, %s, %s, %s)"
    " on conflict (shell_file_id, page_number) do update set storage_key = excluded.storage_key,"
    " width = excluded.width, height = excluded.height, text_source = excluded.text_source"
)
_UPSERT_TEXT = (
    "insert into ocr_text_extractions (shell_file_id, page_number, engine, text, lines, words,"
    " confidence, duration_ms, flag, ink_coverage, layout, tables, cost_usd)"
    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " on conflict (shell_file_id, page_number) do update set engine = excluded.engine,"
    " text = excluded.text, lines = excluded.lines, words = excluded.words,"
    " confidence = excluded.confidence, duration_ms = excluded.duration_ms,"
    " flag = excluded.flag, ink_coverage = excluded.ink_coverage,"
    " layout = excluded.layout, tables = excluded.tables, cost_usd = excluded.cost_usd"
)


def _page_params(page: ShellFilePage) -> tuple:
    return (page.shell_file_id, page.page_number, page.storage_key, page.width, page.height, page.text_source.value)


def _text_params(shell_file_id: uuid.UUID, text: PageText) -> tuple:
    return (
        shell_file_id,
        text.page_number,
        text.engine,
        text.text,
        Jsonb([line.model_dump() for line in text.lines]),
        Jsonb([word.model_dump() for word in text.words]),
        text.confidence,
        text.duration_ms,
        text.flag,
        text.ink_coverage,
        Jsonb([block.model_dump() for block in text.layout]),
        Jsonb(text.tables),
        text.cost_usd,
    )


class PostgresDb(Database):
    """One connection per process, for the life of a warm Lambda or a worker child.

    A connection can die while nobody looks: a Lambda frozen between invocations, a pooler
    restart, a NAT's idle timer. So: TCP keepalives and ``tcp_user_timeout`` (a black-holed
    peer fails in seconds, not at the function's timeout); a connection idle longer than
    ``idle_check_s`` is checked before use; a transaction whose BEGIN fails on a connection
    that was already open is retried once on a fresh one (nothing of ours ran yet, so nothing
    is done twice); ``statement_timeout`` set in every transaction (``SET LOCAL``: a
    transaction-mode pooler keeps no session settings). Connection failures are
    ``DependencyUnavailableError``: the message is retried, not the document failed.
    """

    def __init__(
        self, url: str, connect_timeout_s: int = 10, statement_timeout_s: float = 60.0, idle_check_s: float = 30.0
    ) -> None:
        if not url:
            raise DependencyUnavailableError("DATABASE_URL is not set")
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = int(statement_timeout_s * 1000)
        self._idle_check_s = idle_check_s
        self._conn: psycopg.Connection | None = None
        self._last_used = 0.0
        self._lock = threading.RLock()
        self.reconnects = 0  # connections replaced after the first (tests, figures)

    def __repr__(self) -> str:
        return "PostgresDb(<url hidden>)"

    # --- connection ----------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(
                self._url,
                autocommit=True,
                prepare_threshold=None,
                row_factory=dict_row,
                connect_timeout=self._connect_timeout_s,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
                tcp_user_timeout=max(1000, self._statement_timeout_ms + 10_000),
            )
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DependencyUnavailableError("database unreachable") from exc
        if self._conn is not None:
            self.reconnects += 1
        return conn

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        elif self._idle_check_s and time.monotonic() - self._last_used > self._idle_check_s:
            try:
                self._conn.execute("select 1")
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._discard()
                self._conn = self._connect()
        return self._conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _begin(self) -> psycopg.Connection:
        """An open transaction; a stale connection is replaced once, before anything ran."""
        fresh = self._conn is None or self._conn.closed or self._conn.broken
        conn = self._connection()
        begin = f"begin; set local statement_timeout = {self._statement_timeout_ms}"
        try:
            conn.execute(begin)
            return conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if fresh:
                raise DependencyUnavailableError("database error at the start of a transaction") from exc
        self._discard()
        self._conn = conn = self._connect()
        try:
            conn.execute(begin)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise DependencyUnavailableError("database error at the start of a transaction") from exc
        return conn

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction; connection-level failures become DependencyUnavailableError."""
        with self._lock:
            conn = self._begin()
            try:
                yield conn
                conn.execute("commit")
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    if not conn.broken and not conn.closed:
                        conn.execute("rollback")
                if isinstance(exc, psycopg.errors.ForeignKeyViolation):
                    # Every foreign key here names shell_files: a row written for a file whose
                    # row is gone. The file was deleted while a stage worked on it.
                    raise FileDeletedError("the file was deleted") from exc
                if isinstance(exc, psycopg.errors.QueryCanceled):
                    raise DependencyUnavailableError("a database statement ran past statement_timeout") from exc
                if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                    raise DependencyUnavailableError("database error during a transaction") from exc
                raise
            finally:
                self._last_used = time.monotonic()

    def _execute(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        with self._tx() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- schema --------------------------------------------------------------------

    def migrate(self, directory: Path = MIGRATIONS_DIR) -> list[str]:
        """Apply the SQL files not applied yet, in name order; return their names."""
        return self.migrate_report(directory).applied

    def migrate_report(self, directory: Path = MIGRATIONS_DIR) -> MigrationReport:
        """Apply the SQL files not applied yet whose preconditions hold, in name order, in one
        transaction; say what was applied, what waits on its precondition and what was applied
        before (``shared/adapters/migrations.py``)."""
        with self._tx() as conn:
            conn.execute("select pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            return migrations.apply(conn, directory)

    # --- shell files ---------------------------------------------------------------

    def create_shell_file(self, row: ShellFile) -> None:
        self._execute(
            "insert into shell_files (id, patient_id, storage_key, original_name, mime_type, byte_size,"
            " sha256, status) values (%s, %s, %s, %s, %s, %s, %s, %s) on conflict (id) do nothing",
            (
                row.id,
                row.patient_id,
                row.storage_key,
                row.original_name,
                row.mime_type,
                row.byte_size,
                row.sha256,
                row.status.value,
            ),
        )

    def get_shell_file(self, shell_file_id: uuid.UUID) -> ShellFile | None:
        rows = self._execute("select * from shell_files where id = %s", (shell_file_id,))
        return ShellFile.model_validate(rows[0]) if rows else None

    def begin_preprocess(self, shell_file_id: uuid.UUID) -> ShellFile | None:
        self._execute(
            "update shell_files set status = 'preprocessing', ocr_sent_through = 0, updated_at = now()"
            " where id = %s and status = 'queued'",
            (shell_file_id,),
        )
        return self.get_shell_file(shell_file_id)

    def record_ocr_sent(self, shell_file_id: uuid.UUID, through_page: int) -> None:
        self._execute(
            "update shell_files set ocr_sent_through = greatest(coalesce(ocr_sent_through, 0), %s) where id = %s",
            (through_page, shell_file_id),
        )

    def set_file_facts(self, shell_file_id: uuid.UUID, mime_type: str, byte_size: int, sha256: str) -> None:
        self._execute(
            "update shell_files set mime_type = %s, byte_size = %s, sha256 = %s, updated_at = now() where id = %s",
            (mime_type, byte_size, sha256, shell_file_id),
        )

    def upsert_page(self, page: ShellFilePage) -> None:
        self.upsert_pages(page.shell_file_id, [page], [])

    def upsert_text(self, shell_file_id: uuid.UUID, text: PageText) -> None:
        self.upsert_pages(shell_file_id, [], [text])

    def upsert_pages(self, shell_file_id: uuid.UUID, pages: list[ShellFilePage], texts: list[PageText]) -> None:
        # One transaction (one commit, one WAL flush) for a run of pages instead of two per page.
        with self._tx() as conn, conn.cursor() as cur:
            if texts:
                cur.executemany(_UPSERT_TEXT, [_text_params(shell_file_id, t) for t in texts])
            if pages:
                cur.executemany(_UPSERT_PAGE, [_page_params(p) for p in pages])

    def finish_preprocess(self, shell_file_id: uuid.UUID, page_count: int, needs_ocr: bool) -> bool:
        rows = self._execute(
            "update shell_files set status = %s, page_count = %s, updated_at = now()"
            " where id = %s and status in ('queued', 'preprocessing') returning id",
            ("ocr" if needs_ocr else "discovering", page_count, shell_file_id),
        )
        return bool(rows)

    def pages_without_text(self, shell_file_id: uuid.UUID) -> list[int]:
        rows = self._execute(
            "select p.page_number from shell_file_pages p left join ocr_text_extractions t"
            " on t.shell_file_id = p.shell_file_id and t.page_number = p.page_number"
            " where p.shell_file_id = %s and t.page_number is null order by p.page_number",
            (shell_file_id,),
        )
        return [row["page_number"] for row in rows]

    def try_start_discovery(self, shell_file_id: uuid.UUID) -> bool:
        # One statement: however many OCR invocations race on the last pages, the row lock
        # lets exactly one see status 'ocr' with every page read, and flip it.
        rows = self._execute(
            "update shell_files f set status = 'discovering', updated_at = now()"
            " where f.id = %s and f.status = 'ocr' and f.page_count is not null"
            " and (select count(*) from ocr_text_extractions t where t.shell_file_id = f.id) >= f.page_count"
            " returning f.id",
            (shell_file_id,),
        )
        return bool(rows)

    def page_texts(self, shell_file_id: uuid.UUID, boxes: bool = True) -> list[PageText]:
        rows = self._execute(
            "select page_number, engine, text, confidence, duration_ms, flag, ink_coverage, layout, tables,"
            + (" lines, words," if boxes else "")
            + " cost_usd from ocr_text_extractions where shell_file_id = %s order by page_number",
            (shell_file_id,),
        )
        return [
            PageText.model_validate({**row, "duration_ms": row["duration_ms"] or 0.0, "cost_usd": float(row["cost_usd"])})
            for row in rows
        ]

    def complete_discovery(self, manifest: Manifest) -> bool:
        with self._tx() as conn:
            row = conn.execute(
                "select patient_id, status from shell_files where id = %s for update",
                (manifest.shell_file_id,),
            ).fetchone()
            if row is None or row["status"] != FileStatus.DISCOVERING.value:
                return False
            conn.execute("delete from healthcare_encounters where shell_file_id = %s", (manifest.shell_file_id,))
            for ordinal, enc in enumerate(manifest.encounters):
                conn.execute(
                    "insert into healthcare_encounters (shell_file_id, patient_id, ordinal, encounter_type,"
                    " timing, date_start, date_end, provider, facility, page_ranges, confidence, evidence,"
                    " patient_name, patient_dob, patient_identifier, needs_review, review_reasons)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        manifest.shell_file_id,
                        row["patient_id"],
                        ordinal,
                        enc.encounter_type.value,
                        enc.timing.value,
                        enc.date_start,
                        enc.date_end,
                        enc.provider,
                        enc.facility,
                        Jsonb([list(r) for r in enc.page_ranges]),
                        enc.confidence,
                        Jsonb([e.model_dump() for e in enc.evidence]),
                        enc.patient_name,
                        enc.patient_dob,
                        enc.patient_identifier,
                        enc.needs_review,
                        Jsonb(enc.review_reasons),
                    ),
                )
            conn.execute(
                "insert into shell_file_manifests (shell_file_id, manifest, provider, model, input_tokens,"
                " output_tokens, cost_usd) values (%s, %s, %s, %s, %s, %s, %s)"
                " on conflict (shell_file_id) do update set manifest = excluded.manifest,"
                " provider = excluded.provider, model = excluded.model, input_tokens = excluded.input_tokens,"
                " output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd, created_at = now()",
                (
                    manifest.shell_file_id,
                    Jsonb(json.loads(manifest.model_dump_json())),
                    manifest.provider,
                    manifest.model,
                    manifest.input_tokens,
                    manifest.output_tokens,
                    manifest.cost_usd,
                ),
            )
            conn.execute(
                "update shell_files set status = 'completed', error_code = null, error_message = null,"
                " updated_at = now() where id = %s",
                (manifest.shell_file_id,),
            )
        return True

    def mark_failed(
        self, shell_file_id: uuid.UUID, error_code: str, error_message: str, at_stage: Stage | None = None
    ) -> bool:
        # One statement: the check and the write see the same row version, so a file that
        # moves on concurrently is either still at the stage (and failed) or left alone.
        rows = self._execute(
            "update shell_files f set status = 'failed', error_code = %s, error_message = %s, updated_at = now()"
            f" where f.id = %s and {_AT_STAGE.get(at_stage, 'f.status = any(%s)')} returning f.id",
            (error_code, error_message, shell_file_id, *(() if at_stage in _AT_STAGE else (list(_ACTIVE),))),
        )
        return bool(rows)

    def record_run(self, run: PipelineRun) -> None:
        self._execute(
            "insert into pipeline_runs (shell_file_id, stage, message_id, attempt, outcome, error_code,"
            " started_at, duration_ms, peak_rss_kb) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                run.shell_file_id,
                run.stage.value,
                run.message_id,
                run.attempt,
                run.outcome,
                run.error_code,
                run.started_at,
                run.duration_ms,
                run.peak_rss_kb,
            ),
        )

    def last_error_code(self, shell_file_id: uuid.UUID) -> str | None:
        rows = self._execute(
            "select error_code from pipeline_runs where shell_file_id = %s and error_code is not null"
            " order by started_at desc, id desc limit 1",
            (shell_file_id,),
        )
        return rows[0]["error_code"] if rows else None

    # --- `docpipe retry` ---------------------------------------------------------------

    def failed_files(
        self, codes: list[str] | None = None, since=None, ids: list[uuid.UUID] | None = None, limit: int = 10_000
    ) -> list[dict]:
        """Failed files (id, error_code, page_count), oldest first, filtered by any of error
        code, last update at or after ``since``, and id."""
        where, params = ["status = 'failed'"], []
        if codes is not None:
            where.append("error_code = any(%s)")
            params.append(list(codes))
        if since is not None:
            where.append("updated_at >= %s")
            params.append(since)
        if ids is not None:
            where.append("id = any(%s)")
            params.append(list(ids))
        return self._execute(
            f"select id, error_code, page_count from shell_files where {' and '.join(where)}"
            " order by updated_at, id limit %s",
            (*params, limit),
        )

    def reopen_failed(self, shell_file_id: uuid.UUID) -> str | None:
        """failed -> the state the stage it needs expects (queued before its pages exist, or
        when a page image is missing, which only preprocess makes again; ocr after: the fan-out
        then sends OCR or flips to discovering), in one conditional UPDATE; return that stage,
        or None if the file was not failed (reopened already, or never)."""
        rows = self._execute(
            "update shell_files set status = case when page_count is null or error_code = %s"
            " then 'queued' else 'ocr' end,"
            " error_code = null, error_message = null, discovery_lease_until = null, updated_at = now()"
            " where id = %s and status = 'failed' returning status",
            (PageImageMissingError.code, shell_file_id),
        )
        if not rows:
            return None
        return "preprocess" if rows[0]["status"] == "queued" else "ocr"

    def reopen_for_redrive(self, shell_file_id: uuid.UUID, status: str) -> bool:
        """failed -> ``status``, the state a redriven message's stage expects (`docpipe
        redrive`), in one conditional UPDATE; False if the file was not failed."""
        rows = self._execute(
            "update shell_files set status = %s, error_code = null, error_message = null, updated_at = now()"
            " where id = %s and status = 'failed' returning id",
            (status, shell_file_id),
        )
        return bool(rows)

    # --- reads for the CLI and tests -------------------------------------------------

    def pages(self, shell_file_id: uuid.UUID) -> list[ShellFilePage]:
        rows = self._execute(
            "select shell_file_id, page_number, storage_key, width, height, text_source"
            " from shell_file_pages where shell_file_id = %s order by page_number",
            (shell_file_id,),
        )
        return [ShellFilePage.model_validate(row) for row in rows]

    def manifest(self, shell_file_id: uuid.UUID) -> Manifest | None:
        rows = self._execute("select manifest from shell_file_manifests where shell_file_id = %s", (shell_file_id,))
        return Manifest.model_validate(rows[0]["manifest"]) if rows else None

    def query(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        """Rows for the CLI's status view, the review page, benches and tests, in a read-only
        transaction: Postgres refuses a write through it (``ReadOnlySqlTransaction``)."""
        with self._tx() as conn:
            conn.execute("set transaction read only")
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def execute(self, sql: str, params: tuple | dict = ()) -> list[dict]:
        """A write outside the port's methods, for tests that set up what no stage does (a
        tampered storage key, a file stopped mid-stage); the rows it returns, if any."""
        return self._execute(sql, params)

    # --- the discovery cache ---------------------------------------------------------

    def save_discovery(self, shell_file_id: uuid.UUID, fingerprint: str, discovery: Discovery) -> None:
        self._execute(
            "insert into discovery_cache (shell_file_id, fingerprint, provider, model, discovery, input_tokens,"
            " output_tokens, cost_usd) values (%s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (shell_file_id) do update set fingerprint = excluded.fingerprint,"
            " provider = excluded.provider, model = excluded.model, discovery = excluded.discovery,"
            " input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,"
            " cost_usd = excluded.cost_usd, created_at = now()",
            (
                shell_file_id,
                fingerprint,
                discovery.provider,
                discovery.model,
                Jsonb(json.loads(discovery.model_dump_json())),
                discovery.input_tokens,
                discovery.output_tokens,
                discovery.cost_usd,
            ),
        )

    def claim_discovery(self, shell_file_id: uuid.UUID, owner: str, lease_s: float) -> bool:
        rows = self._execute(
            "update shell_files set discovery_lease_owner = %s,"
            " discovery_lease_until = now() + make_interval(secs => %s)"
            " where id = %s and status = 'discovering' and (discovery_lease_until is null"
            " or discovery_lease_until < now() or discovery_lease_owner = %s) returning id",
            (owner, float(lease_s), shell_file_id, owner),
        )
        return bool(rows)

    def release_discovery(self, shell_file_id: uuid.UUID, owner: str) -> None:
        self._execute(
            "update shell_files set discovery_lease_owner = null, discovery_lease_until = null"
            " where id = %s and discovery_lease_owner = %s",
            (shell_file_id, owner),
        )

    def saved_window(self, shell_file_id: uuid.UUID, fingerprint: str) -> dict | None:
        rows = self._execute(
            "select answer, input_tokens, output_tokens from discovery_windows"
            " where shell_file_id = %s and fingerprint = %s",
            (shell_file_id, fingerprint),
        )
        return rows[0] if rows else None

    def save_window(self, shell_file_id: uuid.UUID, fingerprint: str, answer: dict, input_tokens: int,
                    output_tokens: int) -> None:
        self._execute(
            "insert into discovery_windows (shell_file_id, fingerprint, answer, input_tokens, output_tokens)"
            " values (%s, %s, %s, %s, %s) on conflict (shell_file_id, fingerprint) do nothing",
            (shell_file_id, fingerprint, Jsonb(answer), input_tokens, output_tokens),
        )

    # --- erasure ---------------------------------------------------------------------------
    # The trigger of 20261203002700_erasures.sql records an erasure for every deleted row,
    # however it was deleted; these read and advance the record.

    def is_deleted(self, shell_file_id: uuid.UUID) -> bool:
        rows = self._execute(
            "select not exists (select 1 from shell_files where id = %s)"
            " and exists (select 1 from erasures where shell_file_id = %s) as deleted",
            (shell_file_id, shell_file_id),
        )
        return bool(rows[0]["deleted"])

    def delete_files(
        self, source: str, shell_file_ids: list[uuid.UUID] | None = None, patient_id: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        if (shell_file_ids is None) == (patient_id is None):
            raise ValueError("delete by file ids or by patient, one of the two")
        with self._tx() as conn:
            # Read by the trigger: transaction-local, so it works through a transaction pooler.
            conn.execute("select set_config('docpipe.erasure_source', %s, true)", (source,))
            if patient_id is not None:
                rows = conn.execute("delete from shell_files where patient_id = %s returning id", (patient_id,))
            else:
                rows = conn.execute("delete from shell_files where id = any(%s) returning id", (list(shell_file_ids),))
            return [row["id"] for row in rows.fetchall()]

    def record_erasure(self, shell_file_id: uuid.UUID, patient_id: uuid.UUID, source: str) -> None:
        self._execute(
            "insert into erasures (shell_file_id, patient_id, source, requested_by)"
            " values (%s, %s, %s, session_user) on conflict (shell_file_id) do nothing",
            (shell_file_id, patient_id, source),
        )

    def erasure(self, shell_file_id: uuid.UUID) -> Erasure | None:
        rows = self._execute("select * from erasures where shell_file_id = %s", (shell_file_id,))
        return Erasure.model_validate(rows[0]) if rows else None

    def erasures_of(self, patient_id: uuid.UUID) -> list[Erasure]:
        rows = self._execute("select * from erasures where patient_id = %s order by requested_at", (patient_id,))
        return [Erasure.model_validate(row) for row in rows]

    def due_erasures(self, final_sweep_s: float, limit: int = 100) -> list[Erasure]:
        rows = self._execute(
            "select * from erasures where finished_at is null"
            " and (purge_lease_until is null or purge_lease_until < now())"
            " and (purged_at is null or now() >= requested_at + make_interval(secs => %s))"
            # Least recently tried first: one that keeps failing goes to the back of the line.
            " order by coalesce(purge_started_at, requested_at) limit %s",
            (float(final_sweep_s), limit),
        )
        return [Erasure.model_validate(row) for row in rows]

    def claim_erasure(self, shell_file_id: uuid.UUID, owner: str, lease_s: float) -> bool:
        rows = self._execute(
            "update erasures set purge_lease_owner = %s, purge_lease_until = now() + make_interval(secs => %s),"
            " purge_started_at = now(), purge_attempts = purge_attempts + 1"
            " where shell_file_id = %s and (purge_lease_until is null or purge_lease_until < now()"
            " or purge_lease_owner = %s) returning shell_file_id",
            (owner, float(lease_s), shell_file_id, owner),
        )
        return bool(rows)

    def finish_purge(
        self, shell_file_id: uuid.UUID, owner: str, objects_removed: int, final_sweep_s: float
    ) -> Erasure | None:
        rows = self._execute(
            "update erasures set objects_removed = objects_removed + %s, purged_at = now(), last_error_code = null,"
            " finished_at = case when finished_at is null"
            " and purge_started_at >= requested_at + make_interval(secs => %s) then now() else finished_at end,"
            " purge_lease_owner = null, purge_lease_until = null"
            " where shell_file_id = %s and purge_lease_owner = %s returning *",
            (objects_removed, float(final_sweep_s), shell_file_id, owner),
        )
        return Erasure.model_validate(rows[0]) if rows else None

    def fail_purge(self, shell_file_id: uuid.UUID, owner: str, error_code: str, objects_removed: int = 0) -> None:
        self._execute(
            "update erasures set last_error_code = %s, objects_removed = objects_removed + %s,"
            " purge_lease_owner = null, purge_lease_until = null"
            " where shell_file_id = %s and purge_lease_owner = %s",
            (error_code, objects_removed, shell_file_id, owner),
        )

    def saved_discovery(self, shell_file_id: uuid.UUID, fingerprint: str) -> Discovery | None:
        rows = self._execute(
            "select discovery from discovery_cache where shell_file_id = %s and fingerprint = %s",
            (shell_file_id, fingerprint),
        )
        return Discovery.model_validate(rows[0]["discovery"]) if rows else None
