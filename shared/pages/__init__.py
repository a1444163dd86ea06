"""Documents to pages: sniffing a file's kind (``sniff``) and rendering its pages
(``documents``). Kept import-free so that sniffing never loads PyMuPDF or Pillow."""
