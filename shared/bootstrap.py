"""Builds docpipe's dependencies in one place.

``get_deps()`` is what handlers call: built once per process from the environment's
settings, so a warm Lambda or a long-lived worker reuses its clients and its one database
connection. The embedded runtime and tests ``install()`` their own ``Deps`` (local servers
or fakes) instead.
"""

from __future__ import annotations

import dataclasses
import functools
import threading

from shared.ports import Database, EncounterProvider, OcrEngine, Queue, Storage
from shared.settings import Settings, get_settings


@dataclasses.dataclass
class Deps:
    settings: Settings
    queue: Queue
    storage: Storage
    db: Database
    ocr: OcrEngine
    encounters: EncounterProvider


def build_deps(settings: Settings | None = None, **overrides) -> Deps:
    """Real adapters for ``settings``; any of queue/storage/db/ocr/encounters can be overridden."""
    settings = settings or get_settings()
    parts = dict(overrides)
    if "queue" not in parts:
        from shared.adapters.aws import SqsQueue

        parts["queue"] = SqsQueue(settings.queue_prefix, settings.aws_region, settings.sqs_endpoint)
    if "storage" not in parts:
        parts["storage"] = _storage(settings)
    if "db" not in parts:
        parts["db"] = build_db(settings)
    if "ocr" not in parts:
        parts["ocr"] = _ocr(settings)
    if "encounters" not in parts:
        parts["encounters"] = _encounters(settings)
    return Deps(settings=settings, **parts)


def build_db(settings: Settings) -> Database:
    from shared.adapters.postgres import PostgresDb

    url = settings.database_url
    if not url and settings.database_url_parameter:
        from shared.adapters.aws import read_secure_parameter

        url = read_secure_parameter(settings.database_url_parameter, settings.aws_region)
    return PostgresDb(url)


def _storage(settings: Settings) -> Storage:
    from shared.adapters.aws import LocalStorage, S3Storage

    if settings.storage_backend == "local":
        return LocalStorage(settings.local_storage_dir)
    if settings.storage_backend == "supabase":
        from shared.adapters.supabase_storage import SupabaseStorage

        key = settings.supabase_service_role_key.get_secret_value() if settings.supabase_service_role_key else ""
        if not key and settings.supabase_service_role_key_parameter:
            from shared.adapters.aws import read_secure_parameter

            key = read_secure_parameter(settings.supabase_service_role_key_parameter, settings.aws_region)
        return SupabaseStorage(settings.supabase_url or "", key, settings.storage_bucket, settings.supabase_timeout_s)
    return S3Storage(settings.storage_bucket, settings.aws_region, settings.s3_endpoint)


def _ocr(settings: Settings) -> OcrEngine:
    if settings.ocr_engine == "textract":
        from shared.adapters.textract import TextractOcr

        return TextractOcr.from_settings(settings)
    from shared.adapters.tesseract import TesseractOcr

    return TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_timeout_s)


def _encounters(settings: Settings) -> EncounterProvider:
    if settings.encounter_provider == "openai":
        from shared.encounters.openai import OpenAiEncounters

        return OpenAiEncounters.from_settings(settings)
    from shared.encounters.heuristic import HeuristicEncounters

    return HeuristicEncounters()


_installed: Deps | None = None
_lock = threading.Lock()


def install(deps: Deps | None) -> None:
    """Use ``deps`` for every handler call in this process (None: back to the environment's)."""
    global _installed
    with _lock:
        _installed = deps
    _from_environment.cache_clear()


@functools.lru_cache(maxsize=1)
def _from_environment() -> Deps:
    return build_deps(get_settings())


def get_deps() -> Deps:
    return _installed or _from_environment()
