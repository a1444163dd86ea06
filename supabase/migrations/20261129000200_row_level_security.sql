-- Patient isolation in the database: row-level security on every table that holds patient data.
--
-- Who sees what (PostgREST / supabase-js on Supabase, the same roles on a plain Postgres):
--   authenticated  a patient: SELECT only their own rows, patient_id = auth.uid() (the JWT's
--                  `sub`), through shell_files for the tables keyed by shell_file_id;
--                  no writes (no grant, no policy) and no TRUNCATE (which RLS would not stop)
--   anon           nothing: no grant, and no policy even if a grant is added later
--   service_role   everything (BYPASSRLS on Supabase and here, plus an explicit policy in
--                  case a plain-Postgres role was created without it)
-- The worker connects as the tables' owner (Supabase: postgres), which RLS does not apply to
-- (no FORCE ROW LEVEL SECURITY), so the pipeline is unchanged.
--
-- Works on Supabase, where the roles, the auth schema and auth.uid() exist (left untouched),
-- and on a plain Postgres 16 (the embedded pgserver of `docpipe process` and the tests), where
-- they are created here with Supabase's semantics.

do $roles$
begin
    if not exists (select 1 from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select 1 from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
end
$roles$;

-- Checked by hand rather than `create schema if not exists`: that still demands CREATE on the
-- database, which a Supabase migration role need not have for a schema Supabase owns.
do $auth$
begin
    if not exists (select 1 from pg_namespace where nspname = 'auth') then
        create schema auth;
    end if;
    if not exists (
        select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'auth' and p.proname = 'uid'
    ) then
        -- Supabase's definition: the `sub` claim of the request's JWT, as PostgREST sets it.
        execute $fn$
            create function auth.uid() returns uuid
            language sql stable
            as $body$
                select coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
                )::uuid
            $body$
        $fn$;
        execute 'grant usage on schema auth to anon, authenticated, service_role';
        execute 'grant execute on function auth.uid() to anon, authenticated, service_role';
    end if;
end
$auth$;

-- Privileges first (Supabase's default privileges grant anon and authenticated everything on
-- public tables; RLS then decides rows, but not TRUNCATE, and not a table with RLS off).
revoke all on shell_files, shell_file_pages, ocr_text_extractions, healthcare_encounters,
    shell_file_manifests, pipeline_runs, discovery_cache from anon, authenticated;
grant select on shell_files, shell_file_pages, ocr_text_extractions, healthcare_encounters,
    shell_file_manifests, pipeline_runs, discovery_cache to authenticated;
grant all on shell_files, shell_file_pages, ocr_text_extractions, healthcare_encounters,
    shell_file_manifests, pipeline_runs, discovery_cache to service_role;
grant usage, select on sequence pipeline_runs_id_seq to service_role;

alter table shell_files enable row level security;
alter table shell_file_pages enable row level security;
alter table ocr_text_extractions enable row level security;
alter table healthcare_encounters enable row level security;
alter table shell_file_manifests enable row level security;
alter table pipeline_runs enable row level security;
alter table discovery_cache enable row level security;
-- Not patient data, but on Supabase every public table is reachable through the API. It exists
-- only when `docpipe migrate` applies this file (`supabase db push` keeps its own ledger).
do $ledger$
begin
    if to_regclass('docpipe_migrations') is not null then
        execute 'revoke all on docpipe_migrations from anon, authenticated';
        execute 'alter table docpipe_migrations enable row level security';
    end if;
end
$ledger$;

-- `(select auth.uid())` is evaluated once per statement (an initPlan), not once per row.
drop policy if exists shell_files_patient_select on shell_files;
create policy shell_files_patient_select on shell_files
    for select to authenticated
    using (patient_id = (select auth.uid()));

drop policy if exists healthcare_encounters_patient_select on healthcare_encounters;
create policy healthcare_encounters_patient_select on healthcare_encounters
    for select to authenticated
    using (patient_id = (select auth.uid()));

do $children$
declare
    t text;
begin
    foreach t in array array['shell_file_pages', 'ocr_text_extractions', 'shell_file_manifests',
                             'pipeline_runs', 'discovery_cache']
    loop
        execute format('drop policy if exists %I on %I', t || '_patient_select', t);
        execute format(
            'create policy %I on %I for select to authenticated using (shell_file_id in'
            ' (select f.id from shell_files f where f.patient_id = (select auth.uid())))',
            t || '_patient_select', t);
    end loop;
    foreach t in array array['shell_files', 'shell_file_pages', 'ocr_text_extractions', 'healthcare_encounters',
                             'shell_file_manifests', 'pipeline_runs', 'discovery_cache']
    loop
        execute format('drop policy if exists %I on %I', t || '_service_role_all', t);
        execute format('create policy %I on %I for all to service_role using (true) with check (true)',
                       t || '_service_role_all', t);
    end loop;
end
$children$;
