-- Erasure (issue 27): deleting a file's shell_files row is the deletion. Every row that holds the
-- file's content goes with it (on delete cascade), and this records it in `erasures`, in the same
-- transaction, however the row was deleted (`docpipe delete`, or an app's own DELETE through
-- PostgREST or SQL). The pipeline then removes the file's objects (its original, page images and
-- anything else under originals/{patient}/{file}/ and processed/{patient}/{file}/) from the
-- record: the purge stage, from its queue and its schedule.
--
-- An erasures row holds ids, times and counts, never content: no name, no key, no text.
--   rows_removed     table -> rows, counted before the cascade removed them (every table whose
--                    foreign key names shell_files, so a table added later is counted too)
--   objects_removed  objects the purges removed, each counted once (a purge holds a lease)
--   purged_at        the last purge that completed (purge_started_at: when it began listing)
--   finished_at      the final sweep: a purge that began once no stage that started before the
--                    deletion can still be running (ERASURE_FINAL_SWEEP_S after requested_at)
-- What stays: pipeline_runs (stage, outcome, timings, error codes: no patient data) and this row.
-- TRUNCATE fires no row trigger and records nothing: an erasure is a DELETE.

create table if not exists erasures (
    shell_file_id      uuid primary key,
    patient_id         uuid not null,
    source             text not null,
    requested_by       text,
    requested_at       timestamptz not null default now(),
    page_count         integer,
    rows_removed       jsonb not null default '{}',
    objects_removed    integer not null default 0 check (objects_removed >= 0),
    purge_attempts     integer not null default 0,
    last_error_code    text,
    purge_started_at   timestamptz,
    purged_at          timestamptz,
    finished_at        timestamptz,
    purge_lease_owner  text,
    purge_lease_until  timestamptz
);
create index if not exists erasures_patient_idx on erasures (patient_id);
create index if not exists erasures_open_idx on erasures (requested_at) where finished_at is null;

-- Security definer: an app's role may delete a row without any grant on erasures, and the
-- counts see every row whatever row-level security the deleting role is under.
create or replace function docpipe_record_erasure() returns trigger
language plpgsql security definer set search_path = public, pg_temp
as $fn$
declare
    counts jsonb := jsonb_build_object('shell_files', 1);
    ref record;
    n bigint;
    claims jsonb;
begin
    for ref in
        select c.conrelid::regclass as tbl, a.attname as col
        from pg_constraint c
        join pg_attribute a on a.attrelid = c.conrelid and a.attnum = c.conkey[1]
        where c.contype = 'f' and c.confrelid = 'public.shell_files'::regclass and cardinality(c.conkey) = 1
        order by 1
    loop
        execute format('select count(*) from %s where %I = $1', ref.tbl, ref.col) into n using old.id;
        counts := counts || jsonb_build_object(ref.tbl::text, n);
    end loop;
    begin
        claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
    exception when others then
        claims := null;
    end;
    insert into erasures (shell_file_id, patient_id, source, requested_by, page_count, rows_removed)
    values (
        old.id,
        old.patient_id,
        coalesce(nullif(current_setting('docpipe.erasure_source', true), ''), 'row delete'),
        coalesce(claims ->> 'role', session_user::text),
        old.page_count,
        counts
    )
    on conflict (shell_file_id) do update set
        -- the same id deleted again (a row written back after an erasure): a new request
        source = excluded.source, requested_by = excluded.requested_by, requested_at = now(),
        page_count = excluded.page_count, rows_removed = excluded.rows_removed,
        purged_at = null, finished_at = null, last_error_code = null;
    return old;
end
$fn$;
revoke all on function docpipe_record_erasure() from public;

drop trigger if exists shell_files_record_erasure on shell_files;
create trigger shell_files_record_erasure before delete on shell_files
    for each row execute function docpipe_record_erasure();

-- A run of a deleted file's message that ended without writing anything.
alter table pipeline_runs drop constraint if exists pipeline_runs_outcome_check;
alter table pipeline_runs add constraint pipeline_runs_outcome_check
    check (outcome in ('succeeded', 'failed', 'retry', 'skipped', 'reopened', 'deleted'));

-- The same isolation as every patient table: a patient reads their own erasures, anon nothing,
-- the service role everything; nobody but the service role writes.
revoke all on erasures from anon, authenticated;
grant select on erasures to authenticated;
grant all on erasures to service_role;
alter table erasures enable row level security;
drop policy if exists erasures_patient_select on erasures;
create policy erasures_patient_select on erasures for select to authenticated
    using (patient_id = (select auth.uid()));
drop policy if exists erasures_service_role_all on erasures;
create policy erasures_service_role_all on erasures for all to service_role using (true) with check (true);
