"""`docpipe view`: a local, read-only review page over what the stages stored.

A files table (status, error, pages, native/OCR counts, encounters, cost, time per stage,
newest first, filtered by status) and, per file, its page JPEGs with the word boxes drawn
over them (coloured by confidence), each page's text beside it, and the encounters as a
strip across the pages; pointing at an encounter's field highlights its evidence on its page.
Identity and review flags are shown when the manifest carries them.

It reads through the same ports the stages use (``Database``, ``Storage``) and never writes.
The server is the standard library's ``http.server``: a handful of GET routes on loopback
need no framework, and the Lambda zip and the container lock stay as they are. Everything
the page needs (HTML, one CSS and one JS file) is served by it: no CDN, no build step.
Its log lines carry the route, the file id and the status only: never page text, names or
file names.

This package imports nothing heavy; ``shared.view.server`` holds the server.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def base_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    return f"http://{host}:{port}"


def file_path(shell_file_id) -> str:
    """The page of one file, relative to the server's base URL."""
    return f"/files/{shell_file_id}"
