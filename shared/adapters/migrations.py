"""The SQL migrations of ``supabase/migrations/`` as `docpipe migrate` applies them.

Each file runs once, in name order, and is recorded in ``docpipe_migrations`` when it ran.
A file may declare a precondition in its header, two comment lines that the Supabase CLI
and psql read as comments::

    -- docpipe-precondition: Supabase Storage's schema exists (the Storage server makes it when it starts)
    -- docpipe-precondition-check: select to_regclass('storage.objects') is not null

The check is one SQL expression giving a boolean. While it is false the file is not run and
not recorded: it is reported as *waiting*, and the next `docpipe migrate` after the
precondition holds runs it. A file that did nothing because what it works on was not there
yet is so never mistaken for one that is done (the Storage policies, when docpipe migrated
before the Storage server made its schema).

The files after a waiting one are applied meanwhile, so a file with a precondition is one that
nothing later depends on, and it must be idempotent: it may also run where an older runner,
which did not check preconditions, recorded it (such a record is checked again: the file
may have done nothing then). Its own guard (``if to_regclass(...) is null then return``)
stays, for ``psql -f`` and ``supabase db push``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import psycopg

_PRECONDITION = re.compile(r"^--\s*docpipe-precondition:\s*(.+?)\s*$", re.M)
_CHECK = re.compile(r"^--\s*docpipe-precondition-check:\s*(.+?)\s*$", re.M)


@dataclasses.dataclass(frozen=True)
class Precondition:
    description: str  # what must hold, for the person running `docpipe migrate`
    check: str  # SQL: one boolean


@dataclasses.dataclass
class MigrationReport:
    """What one `docpipe migrate` did: files applied, files waiting on their precondition (with
    it), and files skipped because they were applied before."""

    applied: list[str] = dataclasses.field(default_factory=list)
    waiting: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    already: list[str] = dataclasses.field(default_factory=list)


def precondition_of(sql: str, name: str = "migration") -> Precondition | None:
    """The precondition a migration's header declares, or None; ``ValueError`` when one of the
    two lines is missing (a check nobody can read, or a reason nobody checks)."""
    described, checked = _PRECONDITION.findall(sql), _CHECK.findall(sql)
    if not described and not checked:
        return None
    if len(described) != 1 or len(checked) != 1:
        raise ValueError(f"{name}: a precondition is one 'docpipe-precondition:' line and one "
                         "'docpipe-precondition-check:' line")
    return Precondition(described[0], checked[0].rstrip(";"))


def apply(conn: psycopg.Connection, directory: Path) -> MigrationReport:
    """Apply ``directory``'s files on ``conn``, inside the caller's transaction (which holds the
    migration lock)."""
    conn.execute(
        "create table if not exists docpipe_migrations ("
        " name text primary key, applied_at timestamptz not null default now())"
    )
    # The precondition a file was applied under; null for a file without one, and for every
    # row an older runner wrote (it did not check).
    conn.execute("alter table docpipe_migrations add column if not exists precondition text")
    recorded = {row["name"]: row["precondition"] for row in conn.execute("select name, precondition from docpipe_migrations")}
    report = MigrationReport()
    for path in sorted(directory.glob("*.sql")):
        sql = path.read_text()
        precondition = precondition_of(sql, path.name)
        if path.name in recorded and (precondition is None or recorded[path.name] is not None):
            report.already.append(path.name)
            continue
        if precondition is not None and not _holds(conn, precondition):
            # Recorded unchecked by an older runner while it could not have done its work.
            conn.execute("delete from docpipe_migrations where name = %s", (path.name,))
            report.waiting.append((path.name, precondition.description))
            continue
        conn.execute(sql)
        conn.execute(
            "insert into docpipe_migrations (name, precondition) values (%s, %s)"
            " on conflict (name) do update set precondition = excluded.precondition, applied_at = now()",
            (path.name, precondition.description if precondition else None),
        )
        report.applied.append(path.name)
    return report


def _holds(conn: psycopg.Connection, precondition: Precondition) -> bool:
    row = conn.execute(f"select ({precondition.check}) as holds").fetchone()
    return bool(row and row["holds"])
