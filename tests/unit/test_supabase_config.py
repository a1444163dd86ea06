"""supabase/config.toml and the migrations as the Supabase CLI takes them: `supabase start` and
`supabase db reset` apply supabase/migrations/ on a database where Supabase's roles, `auth` and
`storage` already exist, so the migrations must create nothing of theirs unguarded and alter none."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from shared.settings import Settings

SUPABASE = Path(__file__).resolve().parents[2] / "supabase"
MIGRATIONS = sorted((SUPABASE / "migrations").glob("*.sql"))


def _config() -> dict:
    return tomllib.loads((SUPABASE / "config.toml").read_text())


def _mib(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)\s*(MiB|GiB)", text).groups()
    return int(number) * (1024 ** (2 if unit == "MiB" else 3))


def test_the_cli_applies_our_migrations_through_a_transaction_pooler():
    config = _config()
    assert config["db"]["migrations"]["enabled"] is True
    assert config["db"]["pooler"]["pool_mode"] == "transaction"
    assert (SUPABASE / "migrations").is_dir() and MIGRATIONS


def test_the_bucket_is_private_and_takes_the_largest_original():
    config = _config()
    bucket = config["storage"]["buckets"][Settings().storage_bucket]
    assert bucket["public"] is False
    for limit in (config["storage"]["file_size_limit"], bucket["file_size_limit"]):
        assert _mib(limit) >= Settings().max_file_bytes
    assert config["storage"]["s3_protocol"]["enabled"] is True
    # The Storage policies name the same bucket.
    policies = (SUPABASE / "migrations" / "20261201000400_storage_rls.sql").read_text()
    assert f"bucket_id = '{Settings().storage_bucket}'" in policies


def test_migrations_never_alter_or_blindly_create_supabases_roles():
    for path in MIGRATIONS:
        sql = path.read_text().lower()
        assert not re.search(r"\balter\s+role\b", sql), path.name
        assert not re.search(r"\bdrop\s+role\b", sql), path.name
        for match in re.finditer(r"create\s+role\s+(\w+)", sql):
            before = sql[: match.start()]
            assert f"rolname = '{match.group(1)}'" in before[-300:], f"{path.name}: unguarded create role {match.group(1)}"
        # Supabase owns `auth` and `storage`: created or changed only where absent.
        assert "create schema storage" not in sql, path.name
        if re.search(r"create\s+(or\s+replace\s+)?function\s+auth\.", sql):
            assert "from pg_proc" in sql and "proname = 'uid'" in sql, f"{path.name}: auth.uid() replaced unguarded"
