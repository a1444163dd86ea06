-- Recovery at the edges (issue 12).
--
-- pipeline_runs.outcome 'reopened': `docpipe retry` reopened a failed file and re-sent what
-- its state needs (one row per file reopened, so the ledger shows every retry).
--
-- The discover lease: a discover invocation claims the file (discovery_lease_until, and the
-- claimant in discovery_lease_owner) with one conditional UPDATE before it calls the model;
-- a second copy of the message that arrives meanwhile finds the lease held and is retried
-- later instead of paying for the same answer. The lease expires, so a claimant that died
-- holds nothing for long.
--
-- discovery_windows: the provider's answer for each page window of a long document, kept as
-- soon as it is paid for, so a throttle after window k keeps windows 1..k. fingerprint ties a
-- row to the provider, its model, the window's pages and their texts.

alter table pipeline_runs drop constraint if exists pipeline_runs_outcome_check;
alter table pipeline_runs add constraint pipeline_runs_outcome_check
    check (outcome in ('succeeded', 'failed', 'retry', 'skipped', 'reopened'));

alter table shell_files add column if not exists discovery_lease_until timestamptz;
alter table shell_files add column if not exists discovery_lease_owner text;

create table if not exists discovery_windows (
    shell_file_id   uuid not null references shell_files (id) on delete cascade,
    fingerprint     text not null,
    answer          jsonb not null,
    input_tokens    integer not null default 0,
    output_tokens   integer not null default 0,
    created_at      timestamptz not null default now(),
    primary key (shell_file_id, fingerprint)
);

-- Patient data, like discovery_cache: the same isolation as every other table.
revoke all on discovery_windows from anon, authenticated;
grant select on discovery_windows to authenticated;
grant all on discovery_windows to service_role;
alter table discovery_windows enable row level security;
drop policy if exists discovery_windows_patient_select on discovery_windows;
create policy discovery_windows_patient_select on discovery_windows for select to authenticated
    using (shell_file_id in (select f.id from shell_files f where f.patient_id = (select auth.uid())));
drop policy if exists discovery_windows_service_role_all on discovery_windows;
create policy discovery_windows_service_role_all on discovery_windows for all to service_role
    using (true) with check (true);
