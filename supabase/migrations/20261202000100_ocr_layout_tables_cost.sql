-- What Textract's AnalyzeDocument adds to a page's reading (TEXTRACT_FEATURES): the layout
-- blocks the encounter cues read (title, header, footer, page number, section header, each
-- with its text and box) and the page's tables as markdown; and what reading the page cost
-- (Textract's per-page price; 0 for Tesseract and a text layer), summed into the manifest.
-- Same table, same row-level security.
alter table ocr_text_extractions add column if not exists layout jsonb not null default '[]';
alter table ocr_text_extractions add column if not exists tables jsonb not null default '[]';
alter table ocr_text_extractions add column if not exists cost_usd numeric(12, 6) not null default 0;
