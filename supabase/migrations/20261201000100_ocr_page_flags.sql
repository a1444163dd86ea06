-- A page whose reading needs a person: the image has ink and the reading (almost) no text
-- ('ocr_empty'), or the engine's confidence is low ('ocr_low_confidence'); and the share of
-- the page's pixels that are dark, which tells an empty page from a page that reads empty.
alter table ocr_text_extractions add column if not exists flag text;
alter table ocr_text_extractions add column if not exists ink_coverage real;
