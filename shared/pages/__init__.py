"""Documents to pages: sniffing a file's kind (``sniff``) and rendering its pages
(``documents``, over ``pdf``, ``text_layer``, ``images``, ``jpeg`` and ``memory``); page
preparation for OCR (``prepare``). Kept import-free so that sniffing never loads PyMuPDF or
Pillow."""
