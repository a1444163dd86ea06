"""Session fixtures: the real local servers (moto's SQS+S3 server, embedded Postgres), and
per-test deps on their own queue prefix and bucket so tests never see each other's messages."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from shared.runtime.localstack import LOCAL_CREDENTIALS

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"

for _key, _value in {**LOCAL_CREDENTIALS, "AWS_DEFAULT_REGION": "us-east-1"}.items():
    os.environ.setdefault(_key, _value)


def needs_tesseract():
    return pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory):
    pytest.importorskip("pgserver")
    pytest.importorskip("moto.server")
    from shared.runtime.localstack import LocalStack

    stack = LocalStack(tmp_path_factory.mktemp("stack"), storage="s3").start()
    yield stack
    stack.stop()


# Postgres is reached directly and through PgBouncer in transaction mode (Supabase's pooler on
# 6543: no session state, no server-side prepared statements kept across transactions). These
# modules' tests that use the database run both ways (`[direct]`, `[pooler]`); in test_adapters
# only the PostgresDb tests (those that touch `.db` or PostgresDb). Any other test opts in with
# @pytest.mark.pooler; everything else is `direct` only.
POOLED_MODULES = {"test_adapters.py", "test_idempotency.py", "test_handlers.py", "test_rls.py"}
_DB_PATHS = ("direct", "pooler")


def _uses_postgres(function) -> bool:
    import inspect

    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return True
    return ".db" in source or "PostgresDb" in source or "database_url" in source


def pytest_configure(config):
    config.addinivalue_line("markers", "pooler: also run this test through PgBouncer in transaction mode")


def pytest_generate_tests(metafunc):
    if "database_url" not in metafunc.fixturenames:
        return
    module = Path(str(metafunc.definition.fspath)).name
    opted_in = metafunc.definition.get_closest_marker("pooler") is not None
    if opted_in or (module in POOLED_MODULES and (module != "test_adapters.py" or _uses_postgres(metafunc.function))):
        metafunc.parametrize("database_url", _DB_PATHS, indirect=True)


@pytest.fixture
def database_url(request, local_stack) -> str:
    """The session Postgres, directly or (param ``pooler``) through the session's PgBouncer."""
    if getattr(request, "param", "direct") == "pooler":
        return request.getfixturevalue("pgbouncer").url
    return local_stack.database_url


@pytest.fixture
def stack_settings(local_stack, database_url, tmp_path):
    from shared.settings import Settings

    tag = uuid.uuid4().hex[:10]
    return Settings(
        database_url=database_url,
        aws_endpoint_url=local_stack.endpoint_url,
        storage_backend="s3",
        storage_bucket=f"docpipe-{tag}",
        queue_prefix=f"t{tag}",
        visibility_timeout_s=30,
        max_receive_count=3,
        retry_delay_s=1,  # redeliveries after 1 and 4 s: tests wait less than production would
    )


@pytest.fixture
def stack_env(local_stack, stack_settings) -> dict[str, str]:
    """The environment that points a docpipe subprocess at this test's database, queues and
    bucket."""
    return {
        **os.environ,
        **local_stack.env(),
        "DATABASE_URL": stack_settings.database_url.get_secret_value(),
        "QUEUE_PREFIX": stack_settings.queue_prefix,
        "STORAGE_BACKEND": "s3",
        "STORAGE_BUCKET": stack_settings.storage_bucket,
    }


@pytest.fixture
def stack_deps(stack_settings):
    """Real adapters on the local stack, provisioned, installed for handlers."""
    from shared.bootstrap import build_deps, install
    from shared.submit import provision

    deps = build_deps(stack_settings)
    provision(deps)
    install(deps)
    yield deps
    install(None)
    deps.db.close()


@pytest.fixture(scope="session")
def samples_dir(tmp_path_factory):
    import docpipe_samples as samples

    dest = tmp_path_factory.mktemp("samples")
    samples.write_samples(dest)
    samples.write_bad_samples(dest)
    return dest


@pytest.fixture(scope="session")
def pgbouncer(local_stack, tmp_path_factory):
    """PgBouncer in transaction mode in front of the session's Postgres (Supabase's pooler)."""
    from shared.runtime import pgbouncer as pgb

    if not pgb.available():
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    bouncer = pgb.PgBouncer(local_stack.database_url, tmp_path_factory.mktemp("pgbouncer")).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="session")
def supabase_storage(local_stack, tmp_path_factory):
    """The real Supabase Storage API server, sharing the session's Postgres with our tables."""
    from tests.servers import SupabaseStorageServer

    if not SupabaseStorageServer.available():
        pytest.skip("../shared/tools/supabase-storage (and npm) are needed for the Supabase Storage server")
    server = SupabaseStorageServer(local_stack.database_url, tmp_path_factory.mktemp("supabase-storage")).start()
    yield server
    server.stop()
