"""What ``docpipe lambda up|process`` starts: the production configuration on this machine.

The local stand-ins, each started here: moto's server for SQS, S3, SSM, Secrets Manager and
(unless another endpoint is given) Textract; an embedded PostgreSQL reached by the functions
through PgBouncer in transaction mode, as Supabase's pooler is (the database URL they read
from SSM is the pooler's); Storage on moto's S3 or, with ``StorageBackend=supabase``, the
Supabase Storage server at the template's ``SupabaseUrl``. The secrets the template names are
seeded where it says to read them (``DatabaseUrlParameter``, ``SupabaseServiceRoleKeyParameter``
in SSM, ``OpenAiApiKeySecretName`` in Secrets Manager); then the template runs in
``LambdaEmulator``.

The uploader (submitting files, reading results) is this process, with the direct database
URL, as a web app beside the functions would be.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import IO

from shared.runtime import lambda_template
from shared.runtime.lambda_emulator import LambdaEmulator
from shared.runtime.localstack import LOCAL_CREDENTIALS, LocalStack

TERMINAL = ("completed", "failed")


class LambdaLocal:
    def __init__(
        self,
        data_dir: Path,
        template_path: Path,
        overrides: dict[str, str] | None = None,
        *,
        database_url: str | None = None,
        pooler: bool = True,
        supabase_service_role_key: str | None = None,
        openai_api_key: str | None = None,
        openai_base_url: str | None = None,
        textract_endpoint_url: str | None = None,
        logs_dir: Path | None = None,
        report: IO | None = None,
        concurrency_cap: int | None = None,
        schedule_interval_s: float | None = None,
        region: str = "us-east-1",
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.template_path = Path(template_path)
        # The bucket is the one parameter of ours without a default; locally any name will do.
        self.overrides = {**lambda_template.local_defaults(template_path, {"StorageBucketName": "docpipe"}), **(overrides or {})}
        self.database_url = database_url
        self.use_pooler = pooler
        self.supabase_service_role_key = supabase_service_role_key
        self.openai_api_key = openai_api_key
        self.openai_base_url = openai_base_url
        self.textract_endpoint_url = textract_endpoint_url
        self.logs_dir = logs_dir
        self.report = report
        self.concurrency_cap = concurrency_cap
        self.schedule_interval_s = schedule_interval_s
        self.region = region
        self.stack: LocalStack | None = None
        self.direct_database_url: str | None = None
        self.function_database_url: str | None = None
        self.pooler = None
        self.emulator: LambdaEmulator | None = None
        self.template: lambda_template.LocalTemplate | None = None
        self.parameters: dict[str, str] = {}
        self._deps = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LambdaLocal:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LambdaLocal:
        from shared.adapters.aws import boto_client
        from shared.adapters.postgres import PostgresDb

        self.parameters = lambda_template.parameters(self.template_path, self.overrides)
        if self.parameters.get("EncounterProvider") == "openai" and not (self.openai_api_key or self.openai_base_url):
            raise lambda_template.TemplateError(
                "EncounterProvider=openai needs an OpenAI key (--openai-api-key or OPENAI_API_KEY) "
                "or a local OpenAI-compatible server (--openai-base-url or OPENAI_BASE_URL)"
            )
        if self.parameters.get("StorageBackend") == "supabase" and not (
            self.parameters.get("SupabaseUrl") and self.supabase_service_role_key
        ):
            raise lambda_template.TemplateError(
                "StorageBackend=supabase needs SupabaseUrl=... and the service-role key "
                "(--supabase-service-role-key or SUPABASE_SERVICE_ROLE_KEY)"
            )
        self.stack = LocalStack(self.data_dir, storage="s3", postgres=self.database_url is None).start()
        direct_url = self.database_url or self.stack.database_url
        self.direct_database_url = direct_url
        function_db_url = direct_url
        if self.use_pooler:
            from shared.runtime import pgbouncer

            if pgbouncer.available():
                self.pooler = pgbouncer.PgBouncer(direct_url, self.data_dir / "pgbouncer").start()
                function_db_url = self.pooler.url
            elif self.report is not None:
                self.report.write("docpipe lambda: pgbouncer is not installed; functions connect directly\n")
        self.function_database_url = function_db_url
        # Migrations go through the pooler too: they must work where functions connect.
        PostgresDb(function_db_url).migrate()
        self._seed()
        self.template = lambda_template.load(
            self.template_path, self.overrides, self.region, resolve_reference=self._resolve_reference
        )
        sqs = boto_client("sqs", self.region, self.stack.endpoint_url)
        self.emulator = LambdaEmulator(
            self.template,
            sqs,
            self.local_env(),
            logs_dir=self.logs_dir,
            report=self.report,
            concurrency_cap=self.concurrency_cap,
            credentialed_env=self.credentialed_env(),
            schedule_interval_s=self.schedule_interval_s,
        )
        self.emulator.create_queues()
        self._ensure_bucket()
        self.emulator.start()
        return self

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
        if self._deps is not None:
            if "db" in self._deps.built():
                self._deps.db.close()
            self._deps = None
        if self.pooler is not None:
            self.pooler.stop()
            self.pooler = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    def __enter__(self) -> LambdaLocal:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what the functions see ----------------------------------------------------------

    def local_env(self) -> dict[str, str]:
        """Only the local endpoints and credentials go on top of what the template resolves."""
        env = {"AWS_ENDPOINT_URL": self.stack.endpoint_url, **LOCAL_CREDENTIALS, "AWS_SESSION_TOKEN": "docpipe-local"}
        if self.textract_endpoint_url:
            env["TEXTRACT_ENDPOINT_URL"] = self.textract_endpoint_url
        return env

    def credentialed_env(self) -> dict:
        if not self.openai_base_url:
            return {}
        return {"openai": (("OPENAI_API_KEY", "OPENAI_API_KEY_SECRET"), {"OPENAI_BASE_URL": self.openai_base_url})}

    def _aws(self, service: str):
        from shared.adapters.aws import boto_client

        return boto_client(service, self.region, self.stack.endpoint_url)

    def _seed(self) -> None:
        ssm = self._aws("ssm")
        if "DatabaseUrlParameter" in self.parameters:
            ssm.put_parameter(
                Name=self.parameters["DatabaseUrlParameter"],
                Value=self.function_database_url,
                Type="SecureString",
                Overwrite=True,
            )
        if self.parameters.get("StorageBackend") == "supabase":
            ssm.put_parameter(
                Name=self.parameters["SupabaseServiceRoleKeyParameter"],
                Value=self.supabase_service_role_key,
                Type="SecureString",
                Overwrite=True,
            )
        if self.parameters.get("EncounterProvider") == "openai":
            secrets = self._aws("secretsmanager")
            # A local OpenAI-compatible server takes any key; the function still reads one.
            value = self.openai_api_key or "local-openai-compatible-server"
            name = self.parameters["OpenAiApiKeySecretName"]
            try:
                secrets.create_secret(Name=name, SecretString=value)
            except secrets.exceptions.ResourceExistsException:
                secrets.put_secret_value(SecretId=name, SecretString=value)

    def _resolve_reference(self, service: str, reference: str) -> str:
        """A CloudFormation dynamic reference, against the local SSM and Secrets Manager."""
        if service in ("ssm", "ssm-secure"):
            name = reference.split(":")[0]
            return self._aws("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        secret_id, _, rest = reference.partition(":")
        value = self._aws("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"]
        parts = rest.split(":") if rest else []
        if len(parts) >= 2 and parts[1]:  # SecretString:json-key
            import json

            return str(json.loads(value)[parts[1]])
        return value

    def _ensure_bucket(self) -> None:
        deps = self.uploader()
        ensure = getattr(deps.storage, "ensure_bucket", None)
        if ensure is not None:
            ensure()

    # --- the uploader's side ---------------------------------------------------------------

    def uploader(self):
        """Deps for submitting and reading results: the direct database, the template's queues
        and bucket, storage as the functions have it."""
        if self._deps is None:
            from shared.bootstrap import build_deps
            from shared.settings import Settings

            backend = self.parameters.get("StorageBackend", "s3")
            settings = Settings(
                database_url=self.direct_database_url,
                aws_endpoint_url=self.stack.endpoint_url,
                aws_region=self.region,
                queue_prefix=self.parameters.get("QueuePrefix", "docpipe"),
                storage_backend=backend,
                storage_bucket=self.parameters.get("StorageBucketName", "docpipe"),
                supabase_url=self.parameters.get("SupabaseUrl") or None,
                supabase_service_role_key=self.supabase_service_role_key,
            )
            self._deps = build_deps(settings)
        return self._deps

    def submit(self, paths: list[Path], patient_id: uuid.UUID) -> list[uuid.UUID]:
        from shared.submit import submit

        deps = self.uploader()
        return [submit(deps, Path(p), patient_id) for p in paths]

    def wait(self, shell_file_ids: list[uuid.UUID], timeout_s: float, on_change=None) -> bool:
        """Until every file is completed or failed (True), or ``timeout_s`` passes (False)."""
        db = self.uploader().db
        deadline = time.monotonic() + timeout_s
        seen: dict[uuid.UUID, str] = {}
        while time.monotonic() < deadline:
            done = 0
            for sfid in shell_file_ids:
                row = db.get_shell_file(sfid)
                status = row.status.value if row else "?"
                if on_change is not None and seen.get(sfid) != status:
                    on_change(sfid, row)
                seen[sfid] = status
                done += status in TERMINAL
            if done == len(shell_file_ids):
                return True
            time.sleep(0.25)
        return False

    def max_attempts(self) -> dict[str, int | None]:
        """Deliveries each stage's queue gives a message before its DLQ (the template's
        maxReceiveCount), by stage."""
        prefix = self.parameters.get("QueuePrefix", "docpipe")
        counts = {name: count for name, _, count in self.template.dlq_chain()}
        return {stage: counts.get(f"{prefix}-{stage}") for stage in ("preprocess", "ocr", "discover")}

    def page_figures(self, shell_file_ids: list[uuid.UUID]) -> tuple[int, int]:
        """(pages, pages read by OCR) of these files."""
        db = self.uploader().db
        pages = ocr = 0
        for sfid in shell_file_ids:
            for page in db.pages(sfid):
                pages += 1
                ocr += page.text_source.value == "ocr"
        return pages, ocr

    def environment_for_users(self) -> dict[str, str]:
        """What to export so that `docpipe submit` / `status` reach this stack."""
        return {
            "DATABASE_URL": self.direct_database_url,
            "AWS_ENDPOINT_URL": self.stack.endpoint_url,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **LOCAL_CREDENTIALS,
            "QUEUE_PREFIX": self.parameters.get("QueuePrefix", "docpipe"),
            "STORAGE_BACKEND": self.parameters.get("StorageBackend", "s3"),
            "STORAGE_BUCKET": self.parameters.get("StorageBucketName", "docpipe"),
            **({"SUPABASE_URL": self.parameters["SupabaseUrl"]} if self.parameters.get("SupabaseUrl") else {}),
        }
