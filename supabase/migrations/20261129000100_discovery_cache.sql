-- What an encounter provider returned for a file, kept before the encounters are written, so a
-- redelivered discover message (after a crash between the model call and the write, or a lost
-- acknowledgement) reuses it instead of paying for the model again.
-- fingerprint: sha256 of the provider, its model and the page texts the answer was computed
-- from; a file whose text changed (re-OCR) misses the cache and is discovered afresh.

create table if not exists discovery_cache (
    shell_file_id   uuid primary key references shell_files (id) on delete cascade,
    fingerprint     text not null,
    provider        text not null,
    model           text,
    discovery       jsonb not null,
    input_tokens    integer not null default 0,
    output_tokens   integer not null default 0,
    cost_usd        numeric(12, 6) not null default 0,
    created_at      timestamptz not null default now()
);

alter table discovery_cache enable row level security;
