-- Patient isolation in Storage: the bucket is private, and Storage's own row-level security on
-- storage.objects lets a signed-in patient read their own originals and page JPEGs and nothing else.
--
-- Who sees what through the Storage API (it runs each request as the JWT's role, with the JWT's
-- claims set as PostgREST does, so auth.uid() is the `sub`):
--   authenticated  a patient: SELECT (download, list, sign a URL) of objects in the `docpipe`
--                  bucket whose key is originals/{their id}/... or processed/{their id}/...
--                  (shared/keys.py builds every key that way); no insert, update or delete
--   anon           nothing (no policy; the bucket is not public, so no public URL either)
--   service_role   everything (BYPASSRLS on Supabase, plus an explicit policy in case the role
--                  was created without it); the pipeline writes with the service-role key
--
-- The bucket name is docpipe's default STORAGE_BUCKET. A deployment with another bucket adds a
-- migration of its own with the same policies for it.
--
-- Where the schema `storage` exists (a Supabase project, `supabase start`, the Storage server of
-- the tests, which creates it at its start) this creates the bucket and the policies. Until it
-- exists (a plain Postgres, as `docpipe process` embeds; a database migrated before its Storage
-- server first started) `docpipe migrate` neither runs this file nor records it: it reports it as
-- waiting on the precondition below and runs it on the first `docpipe migrate` after Storage has
-- made its schema. Run by other means (psql -f, supabase db push) on a database without the
-- schema, it does nothing and says so. It is idempotent: applied again, it changes nothing.
--
-- docpipe-precondition: Supabase Storage's schema exists (the Storage server creates it when it first starts)
-- docpipe-precondition-check: select to_regclass('storage.objects') is not null and to_regclass('storage.buckets') is not null
-- Nothing here creates or alters a role: Storage (and Supabase) own anon, authenticated and
-- service_role; 20261129000200 creates them only where they are missing.

do $storage$
begin
    if to_regclass('storage.objects') is null or to_regclass('storage.buckets') is null then
        raise notice 'docpipe storage policies skipped: no storage schema in this database';
        return;
    end if;

    -- Private: no public URL, every read goes through the policies below.
    insert into storage.buckets (id, name, public)
    values ('docpipe', 'docpipe', false)
    on conflict (id) do update set public = false;

    -- Storage enables RLS on its tables itself; said again so the policies below are never moot.
    execute 'alter table storage.objects enable row level security';

    execute 'drop policy if exists docpipe_patient_reads_own_objects on storage.objects';
    -- storage.foldername('processed/<patient>/<file>/page-0001.jpg') = {processed,<patient>,<file>}.
    -- `(select auth.uid())` is evaluated once per statement (an initPlan), not once per row.
    execute $policy$
        create policy docpipe_patient_reads_own_objects on storage.objects
            for select to authenticated
            using (
                bucket_id = 'docpipe'
                and (storage.foldername(name))[1] in ('originals', 'processed')
                and (storage.foldername(name))[2] = (select auth.uid())::text
            )
    $policy$;

    execute 'drop policy if exists docpipe_service_role_all_objects on storage.objects';
    execute $policy$
        create policy docpipe_service_role_all_objects on storage.objects
            for all to service_role
            using (bucket_id = 'docpipe') with check (bucket_id = 'docpipe')
    $policy$;
end
$storage$;
