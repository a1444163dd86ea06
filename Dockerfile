# docpipe container worker (Render background worker, or any container host).
FROM python:3.12-slim-bookworm

# Tesseract from Debian (5.3) for local OCR; OMP_THREAD_LIMIT=1 is set per call by the adapter.
# tini as PID 1: it forwards SIGTERM to the worker and reaps every orphan (a Tesseract whose
# child was killed mid-page), which Python as PID 1 never would.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd tini \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Pinned dependencies, every one checked against its hash (`make lock` regenerates the file
# from pyproject.toml), in a layer of their own: a code change does not reinstall them.
COPY deploy/container/requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY handlers ./handlers
COPY shared ./shared
COPY supabase ./supabase
RUN pip install --no-deps . && pip check

RUN useradd --create-home --uid 10001 docpipe
USER docpipe

# Configuration comes from the environment (see shared/settings.py and render.yaml).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["docpipe", "worker"]
