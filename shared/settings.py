"""docpipe's one settings model, read from the environment once.

Variable names are the field names upper-cased; they are the names template.yaml's Globals,
the Dockerfile, render.yaml and `docpipe local up` use. Bad values fail at start with a
message that names the variable. No other module reads os.environ.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.retry import deliveries_for

# AnalyzeDocument's feature types that docpipe can ask for. QUERIES needs the questions
# (QueriesConfig) and SIGNATURES adds nothing the page text keeps: neither is offered.
TextractFeature = Literal["LAYOUT", "TABLES", "FORMS"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    # --- connections
    # A secret: never in a repr, a log line or an exception (it holds the password).
    database_url: SecretStr = Field(default=SecretStr(""), description="postgresql:// URL (Supabase: the transaction pooler)")
    database_url_parameter: str | None = Field(
        default=None, description="SSM SecureString holding DATABASE_URL (Lambda); read once at start"
    )
    db_statement_timeout_s: float = Field(
        default=60.0, gt=0, description="a statement running longer is cancelled by the server (retryable)"
    )
    db_idle_check_s: float = Field(
        default=30.0,
        ge=0,
        description="a connection idle this long (a frozen Lambda, a NAT's idle timer) is checked before use",
    )
    secrets_max_age_s: int = Field(default=3600, ge=0, description="how long a read SSM parameter or secret is cached")
    aws_region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(default=None, description="one endpoint for SQS and S3 (moto, ElasticMQ+MinIO)")
    sqs_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    # Supabase Storage's S3 protocol (STORAGE_BACKEND=s3, S3_ENDPOINT_URL=<project>/storage/v1/s3):
    # its own access keys (not the AWS credentials SQS uses), its region, path-style addressing.
    s3_access_key_id: str | None = Field(default=None, description="S3 keys of their own (Supabase's S3 access keys)")
    s3_secret_access_key: SecretStr | None = None
    s3_region: str | None = Field(default=None, description="the S3 endpoint's region if not AWS_REGION")
    s3_force_path_style: bool = Field(default=False, description="path-style addressing (Supabase, MinIO)")
    queue_prefix: str = "docpipe"

    # --- storage
    storage_backend: Literal["s3", "local", "supabase"] = "s3"
    storage_bucket: str = "docpipe"
    local_storage_dir: Path = Path(".docpipe/storage")
    supabase_url: str | None = Field(default=None, description="https://<project>.supabase.co (STORAGE_BACKEND=supabase)")
    supabase_service_role_key: SecretStr | None = Field(default=None, description="service-role key for Storage")
    supabase_service_role_key_parameter: str | None = Field(
        default=None, description="SSM SecureString holding SUPABASE_SERVICE_ROLE_KEY (Lambda); read once at start"
    )
    supabase_timeout_s: float = Field(default=60.0, gt=0, description="one Storage HTTP request")

    # --- OCR
    ocr_engine: Literal["tesseract", "textract"] = "tesseract"
    tesseract_cmd: str = "tesseract"
    tesseract_lang: str = "eng"
    textract_endpoint_url: str | None = Field(default=None, description="override Textract's endpoint (tests)")
    textract_max_attempts: int = Field(default=8, ge=1, le=20, description="adaptive retries per page")
    # NoDecode: the variable is "LAYOUT,TABLES", not JSON.
    textract_features: Annotated[tuple[TextractFeature, ...], NoDecode] = Field(
        default=(),
        description="empty: DetectDocumentText; else AnalyzeDocument with these (LAYOUT, TABLES, FORMS), "
        "comma-separated",
    )

    # --- encounter discovery (Pass 0.5)
    encounter_provider: Literal["heuristic", "openai"] = "heuristic"
    # How numeric dates such as 06/08/2020 read: as each file shows it (auto: one that reads both
    # ways in a file that does not show it is no date), or day-first / month-first throughout.
    date_order: Literal["auto", "dmy", "mdy"] = "auto"
    openai_api_key: SecretStr | None = None
    openai_api_key_secret: str | None = Field(
        default=None, description="Secrets Manager secret holding OPENAI_API_KEY (Lambda); read at first use"
    )
    openai_base_url: str | None = Field(default=None, description="any OpenAI-compatible server")
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=60.0, gt=0)
    llm_pages_per_window: int = Field(default=20, ge=1, le=200)
    # Windows read side by side (each shown the page before it as context) and reconciled after
    # every answer, or one after another with a hand-off (the comparison, and the old behaviour).
    llm_window_mode: Literal["concurrent", "sequential"] = "concurrent"
    llm_max_concurrency: int = Field(
        default=8, ge=1, le=64, description="a file's windows in flight at once (concurrent mode): a 142-page "
        "file in one round at 20 pages a window; times the files discovered at once (DiscoverMaxConcurrency, "
        "WORKER_CONCURRENCY), within the account's requests and tokens per minute",
    )
    llm_context_pages: int = Field(
        default=1, ge=1, le=5, description="readable pages before a window shown to it as context, not to be "
        "assigned (concurrent mode): how an encounter crossing the window's edge is joined",
    )
    llm_input_usd_per_mtok: float = Field(default=0.15, ge=0)
    llm_output_usd_per_mtok: float = Field(default=0.60, ge=0)
    # FHIR R4 (shared/fhir): storage, the discover stage stores each completed file's transaction
    # Bundle at processed/{patient_id}/{shell_file_id}/bundle.json, beside its page images.
    fhir_output: Literal["none", "storage"] = Field(
        default="none", description="storage: the discover stage stores a FHIR R4 Bundle per file beside its pages"
    )

    # --- rendering
    render_dpi: int = Field(default=200, ge=50, le=600)
    render_max_edge: int = Field(default=2400, ge=256, le=10000, description="longest side of a page JPEG, px")
    jpeg_quality: int = Field(default=85, ge=30, le=100)
    native_text_min_chars: int = Field(default=20, ge=1, description="fewer real characters: OCR the page")
    # Pages an OCR message carries. Each message is a child process, a database connection and
    # queue round trips in the container worker (~70 ms a message, bench/throughput.py), which 8
    # pages share; the file's last messages shrink so that workers finish it together. Lambda
    # (template.yaml) keeps 1: a warm function pays no child, and Textract pages run in parallel.
    ocr_pages_per_message: int = Field(default=8, ge=1, le=100, description="pages an OCR message carries")
    release_native_caches: bool = Field(
        default=True, description="shrink MuPDF's store and trim malloc after every record (off: the old worker)"
    )

    # --- limits
    max_file_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_pages: int = Field(default=1000, ge=1)
    max_page_pixels: int = Field(default=180_000_000, ge=1, description="decoded pixels per page image")
    max_render_s_per_page: float = Field(default=30.0, gt=0, description="a page rendering longer fails the file")
    ocr_timeout_s: float = Field(default=120.0, gt=0)

    # --- queues
    visibility_timeout_s: int = Field(default=120, ge=1)
    # Unset (the default): the fewest deliveries whose waits add up to RETRY_BUDGET_S, so a
    # dependency down for an hour (a maintenance window, a throttling storm) fails nothing.
    # Permanent errors never use it: they fail the file at once.
    max_receive_count: int | None = Field(default=None, ge=1, le=1000)
    retry_delay_s: float = Field(
        default=2.0,
        ge=0,
        le=900,
        description="wait before a failed message's second delivery; each later wait is 4x longer (up to "
        "RETRY_MAX_DELAY_S), or the dependency's own Retry-After when longer",
    )

    # --- container worker (a fresh child process per message)
    worker_concurrency: int = Field(default=1, ge=1, le=64, description="children at once")
    worker_isolation: Literal["forkserver", "spawn"] = "forkserver"
    worker_poll_wait_s: int = Field(default=10, ge=0, le=20, description="SQS long poll while idle")
    stage_timeout_s: float = Field(default=600.0, gt=0, description="a child running longer is killed")
    child_memory_mb: int = Field(default=1024, ge=64, description="a child above this RSS is killed")
    shutdown_grace_s: float = Field(default=25.0, ge=0, description="SIGTERM: time running children get")
    worker_tmp_dir: Path | None = Field(default=None, description="parent of the per-child temp dirs")

    # --- retries (issue 12): a budget in time, not a count of deliveries
    retry_budget_s: float = Field(
        default=3600.0, ge=0, description="how long retryable failures are retried before the DLQ; "
        "MAX_RECEIVE_COUNT derives from it (2, 8, 32, 128, 512, 900 ... s: ten deliveries for an hour)"
    )
    retry_max_delay_s: float = Field(default=900.0, ge=1, le=43200, description="the longest wait between deliveries")
    discovery_lease_s: float = Field(
        default=660.0, gt=0, description="a discover invocation's claim on a file (the discover function's "
        "600 s timeout and a margin): a second copy of the message meanwhile does not call the model"
    )

    # --- erasure (issue 27)
    erasure_scan_s: float = Field(
        default=60.0, ge=0, description="a serving worker that runs the purge stage scans for due erasures at start "
        "and this often (0: never; on Lambda, the purge function's schedule)"
    )
    erasure_final_sweep_s: float = Field(
        default=660.0, ge=0, description="the final sweep of a deleted file's prefixes begins this long after the "
        "deletion: past the longest a stage that began before it can run (the functions' 600 s Timeout, "
        "STAGE_TIMEOUT_S) and a margin"
    )

    @field_validator("textract_features", mode="before")
    @classmethod
    def _split_features(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip().upper() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(dict.fromkeys(value))  # "LAYOUT,LAYOUT" asks (and pays) once
        return value

    @model_validator(mode="after")
    def _derive_receive_count(self) -> Settings:
        if self.max_receive_count is None:
            self.max_receive_count = deliveries_for(self.retry_budget_s, self.retry_delay_s, self.retry_max_delay_s)
        return self

    @model_validator(mode="after")
    def _final_sweep_after_every_stage(self) -> Settings:
        # A final sweep that can begin while a stage that started before the deletion still
        # runs would prove nothing. 0 is for tests, where nothing is left running.
        if 0 < self.erasure_final_sweep_s < self.stage_timeout_s:
            raise ValueError(
                f"ERASURE_FINAL_SWEEP_S ({self.erasure_final_sweep_s:g}) must be 0 or at least "
                f"STAGE_TIMEOUT_S ({self.stage_timeout_s:g})"
            )
        return self

    @property
    def sqs_endpoint(self) -> str | None:
        return self.sqs_endpoint_url or self.aws_endpoint_url

    @property
    def s3_endpoint(self) -> str | None:
        return self.s3_endpoint_url or self.aws_endpoint_url


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
