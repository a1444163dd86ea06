-- docpipe core schema: files, pages, page text, encounters, manifests, stage runs.
-- Supabase CLI layout; applied in name order by `docpipe migrate` (or `supabase db push`).

create table if not exists shell_files (
    id              uuid primary key,
    patient_id      uuid not null,
    storage_key     text not null,
    original_name   text,
    mime_type       text,
    byte_size       bigint,
    sha256          text,
    page_count      integer check (page_count is null or page_count >= 0),
    status          text not null default 'queued'
                    check (status in ('queued', 'preprocessing', 'ocr', 'discovering', 'completed', 'failed')),
    error_code      text,
    error_message   text,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index if not exists shell_files_patient_idx on shell_files (patient_id);
create index if not exists shell_files_status_idx on shell_files (status);

create table if not exists shell_file_pages (
    shell_file_id   uuid not null references shell_files (id) on delete cascade,
    page_number     integer not null check (page_number >= 1),
    storage_key     text not null,
    width           integer not null,
    height          integer not null,
    text_source     text not null check (text_source in ('native', 'ocr')),
    created_at      timestamptz not null default now(),
    primary key (shell_file_id, page_number)
);

create table if not exists ocr_text_extractions (
    shell_file_id   uuid not null references shell_files (id) on delete cascade,
    page_number     integer not null check (page_number >= 1),
    engine          text not null,
    text            text not null,
    lines           jsonb not null default '[]',
    words           jsonb not null default '[]',
    confidence      real,
    duration_ms     real,
    created_at      timestamptz not null default now(),
    unique (shell_file_id, page_number)
);

create table if not exists healthcare_encounters (
    id              uuid primary key default gen_random_uuid(),
    shell_file_id   uuid not null references shell_files (id) on delete cascade,
    patient_id      uuid not null,
    ordinal         integer not null,
    encounter_type  text not null,
    timing          text not null default 'happened',
    date_start      date,
    date_end        date,
    provider        text,
    facility        text,
    page_ranges     jsonb not null,
    confidence      real not null,
    evidence        jsonb not null default '[]',
    created_at      timestamptz not null default now(),
    unique (shell_file_id, ordinal)
);
create index if not exists healthcare_encounters_patient_idx on healthcare_encounters (patient_id);

create table if not exists shell_file_manifests (
    shell_file_id   uuid primary key references shell_files (id) on delete cascade,
    manifest        jsonb not null,
    provider        text not null,
    model           text,
    input_tokens    integer not null default 0,
    output_tokens   integer not null default 0,
    cost_usd        numeric(12, 6) not null default 0,
    created_at      timestamptz not null default now()
);

create table if not exists pipeline_runs (
    id              bigint generated always as identity primary key,
    shell_file_id   uuid,
    stage           text not null,
    message_id      text,
    attempt         integer not null default 1,
    outcome         text not null check (outcome in ('succeeded', 'failed', 'retry', 'skipped')),
    error_code      text,
    started_at      timestamptz not null,
    duration_ms     real not null,
    peak_rss_kb     bigint
);
create index if not exists pipeline_runs_file_idx on pipeline_runs (shell_file_id, started_at);
