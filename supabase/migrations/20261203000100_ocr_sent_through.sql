-- Preprocess sends pages to OCR while it renders: the highest page number whose OCR message
-- (and every one before it) this preprocess run has sent. A redelivered preprocess message
-- sends only the pages after it; a fresh run (queued -> preprocessing) starts it again at 0.
alter table shell_files add column if not exists ocr_sent_through integer;
