-- Issue 14: each encounter says whose record it is and how sure the finding is.
-- Patient identity as the pages show it (name, date of birth, identifier; their evidence spans
-- are in `evidence`, fields patient_name / patient_dob / patient_identifier). These are patient
-- data: row-level security on healthcare_encounters (20261129000200) covers every column, and
-- the worker never logs them or puts them in a metric or a queue message.
alter table healthcare_encounters add column if not exists patient_name text;
alter table healthcare_encounters add column if not exists patient_dob date;
alter table healthcare_encounters add column if not exists patient_identifier text;
alter table healthcare_encounters add column if not exists needs_review boolean not null default false;
alter table healthcare_encounters add column if not exists review_reasons jsonb not null default '[]';

-- Encounters waiting for a person, per patient (the review queue).
create index if not exists healthcare_encounters_review_idx on healthcare_encounters (patient_id)
    where needs_review;

-- Stated again so that this file alone leaves the table protected, whatever ran before it.
alter table healthcare_encounters enable row level security;
