"""Builds docpipe's dependencies in one place.

``get_deps()`` is what handlers call: one ``Deps`` per process from the environment's
settings, so a warm Lambda or a long-lived worker reuses its clients and its one database
connection. Each part (queue, storage, db, ocr, encounters) is built the first time a stage
uses it, and only then: the OCR function never builds the encounter provider, preprocess
neither OCR nor provider, failures only the database. So a setting one stage needs never
breaks another, and a missing one fails the record that needs it with a
``MissingSettingError`` naming the variable. The embedded runtime and tests ``install()``
their own ``Deps`` (local servers or fakes) instead.

Secrets are read at first use from where the deployment keeps them (``*_PARAMETER``: SSM
SecureString; ``*_SECRET``: Secrets Manager) through Powertools Parameters, cached for the
life of the process; a value in the environment itself wins (local runs and tests).
"""

from __future__ import annotations

import threading
from typing import Any

from shared.errors import DependencyUnavailableError, MissingSettingError
from shared.ports import Database, EncounterProvider, OcrEngine, Queue, Storage
from shared.settings import Settings, get_settings

_PARTS = ("queue", "storage", "db", "ocr", "encounters")


class Deps:
    """The ports a stage runs on. Parts given to the constructor are used as they are; the
    others are built from ``settings`` on first use (once, thread-safe)."""

    queue: Queue
    storage: Storage
    db: Database
    ocr: OcrEngine
    encounters: EncounterProvider

    def __init__(self, settings: Settings, **parts: Any) -> None:
        unknown = set(parts) - set(_PARTS)
        if unknown:
            raise TypeError(f"unknown dependencies: {sorted(unknown)}")
        self.settings = settings
        self._parts: dict[str, Any] = dict(parts)
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        if name not in _PARTS:
            raise AttributeError(name)
        parts = self.__dict__["_parts"]
        if name not in parts:
            with self.__dict__["_lock"]:
                if name not in parts:
                    parts[name] = _BUILDERS[name](self.settings)
        return parts[name]

    def with_parts(self, **parts: Any) -> Deps:
        """A copy sharing this one's parts, with ``parts`` in place of its own."""
        return Deps(self.settings, **{**self._parts, **parts})

    def built(self) -> list[str]:
        """The parts that exist so far (built or given)."""
        return [name for name in _PARTS if name in self._parts]


def build_deps(settings: Settings | None = None, **overrides) -> Deps:
    """Real adapters for ``settings``, each built on first use; any part can be overridden."""
    return Deps(settings or get_settings(), **overrides)


def _queue(settings: Settings) -> Queue:
    from shared.adapters.aws import SqsQueue

    return SqsQueue(settings.queue_prefix, settings.aws_region, settings.sqs_endpoint)


def build_db(settings: Settings) -> Database:
    from shared.adapters.postgres import PostgresDb

    url = settings.database_url.get_secret_value()
    if not url and settings.database_url_parameter:
        url = read_parameter(settings, settings.database_url_parameter)
    if not url:
        raise MissingSettingError("DATABASE_URL", "or DATABASE_URL_PARAMETER naming an SSM SecureString")
    return PostgresDb(url, statement_timeout_s=settings.db_statement_timeout_s, idle_check_s=settings.db_idle_check_s)


def _storage(settings: Settings) -> Storage:
    from shared.adapters.aws import LocalStorage, S3Storage

    if settings.storage_backend == "local":
        return LocalStorage(settings.local_storage_dir)
    if settings.storage_backend == "supabase":
        from shared.adapters.supabase_storage import SupabaseStorage
        from shared.extras import imported

        if not settings.supabase_url:
            raise MissingSettingError("SUPABASE_URL", "STORAGE_BACKEND=supabase needs it")
        key = settings.supabase_service_role_key.get_secret_value() if settings.supabase_service_role_key else ""
        if not key and settings.supabase_service_role_key_parameter:
            key = read_parameter(settings, settings.supabase_service_role_key_parameter)
        if not key:
            raise MissingSettingError(
                "SUPABASE_SERVICE_ROLE_KEY", "STORAGE_BACKEND=supabase needs it, or SUPABASE_SERVICE_ROLE_KEY_PARAMETER"
            )
        with imported("supabase", "STORAGE_BACKEND=supabase"):  # the adapter imports it on construction
            return SupabaseStorage(settings.supabase_url, key, settings.storage_bucket, settings.supabase_timeout_s)
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return S3Storage(
        settings.storage_bucket,
        settings.s3_region or settings.aws_region,
        settings.s3_endpoint,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret,
        path_style=settings.s3_force_path_style,
    )


def _ocr(settings: Settings) -> OcrEngine:
    if settings.ocr_engine == "textract":
        from shared.adapters.textract import TextractOcr

        return TextractOcr.from_settings(settings)
    from shared.adapters.tesseract import TesseractOcr

    return TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_timeout_s)


def _encounters(settings: Settings) -> EncounterProvider:
    if settings.encounter_provider == "openai":
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        if not key and settings.openai_api_key_secret:
            key = read_secret(settings, settings.openai_api_key_secret)
        if not key and not settings.openai_base_url:
            raise MissingSettingError(
                "OPENAI_API_KEY", "ENCOUNTER_PROVIDER=openai needs it, or OPENAI_API_KEY_SECRET, or OPENAI_BASE_URL"
            )
        from shared.extras import imported

        with imported("openai", "ENCOUNTER_PROVIDER=openai"):
            from shared.encounters.openai import OpenAiEncounters

        return OpenAiEncounters.from_settings(settings, api_key=key)
    from shared.encounters.heuristic import HeuristicEncounters

    return HeuristicEncounters(date_order=settings.date_order)


_BUILDERS = {"queue": _queue, "storage": _storage, "db": build_db, "ocr": _ocr, "encounters": _encounters}


# --- secrets -------------------------------------------------------------------------

_providers: dict[tuple[str, str, str | None], Any] = {}


def _provider(kind: str, settings: Settings):
    """One Powertools Parameters provider per service and endpoint: it caches what it read."""
    key = (kind, settings.aws_region, settings.aws_endpoint_url)
    if key not in _providers:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

        from shared.adapters.aws import boto_client

        client = boto_client("ssm" if kind == "ssm" else "secretsmanager", settings.aws_region, settings.aws_endpoint_url)
        _providers[key] = SSMProvider(boto3_client=client) if kind == "ssm" else SecretsProvider(boto3_client=client)
    return _providers[key]


def read_parameter(settings: Settings, name: str) -> str:
    """An SSM SecureString, decrypted (cached for the process, as a cold start reads it once)."""
    return _read("ssm", settings, name, decrypt=True)


def read_secret(settings: Settings, name: str) -> str:
    """A Secrets Manager secret's string (cached for the process)."""
    return _read("secrets", settings, name)


def _read(kind: str, settings: Settings, name: str, **options) -> str:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    try:
        value = _provider(kind, settings).get(name, max_age=settings.secrets_max_age_s, **options)
    except GetParameterError as exc:
        # The cause may be throttling or the endpoint being down: retryable either way. The
        # name is configuration, not data; the value is never in a message.
        raise DependencyUnavailableError(f"could not read {'parameter' if kind == 'ssm' else 'secret'} {name}") from exc
    return value if isinstance(value, str) else value.decode()


# --- the process's own ---------------------------------------------------------------

_installed: Deps | None = None
_from_env: Deps | None = None
_lock = threading.Lock()


def install(deps: Deps | None) -> None:
    """Use ``deps`` for every handler call in this process (None: back to the environment's)."""
    global _installed, _from_env
    with _lock:
        _installed = deps
        _from_env = None


def get_deps() -> Deps:
    global _from_env
    if _installed is not None:
        return _installed
    with _lock:
        if _from_env is None:
            _from_env = build_deps(get_settings())
        return _from_env
