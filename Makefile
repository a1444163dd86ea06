# docpipe: two commands for a fresh machine.
#   make demo   set up, then run `docpipe process` on generated sample documents
#   make test   set up, then run the whole test suite
#   make browser-deps  Debian's chromium + chromium-driver for the review page's browser tests
#   make fhir-test-deps  the npm packages the FHIR tests check Bundles with (tests/fhir)
#   make sam    the Lambda deployment: `sam validate --lint`, `sam build` (zip, no Docker), its size
# Both install what they need: a virtualenv with docpipe, and Tesseract through apt when it is
# missing and we may (root, or passwordless sudo).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= build/samples
# SAM CLI lives in a virtualenv of its own (its pins are not docpipe's); `sam build` needs the
# Lambda runtime's Python, 3.12, to resolve wheels such as PyMuPDF's.
SAM_VENV ?= build/sam-cli
PYTHON312 ?= $(shell ls -d $$HOME/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -n 1 || true)
PYTHON312 := $(or $(PYTHON312),$(shell command -v python3.12 2>/dev/null))
LAMBDA_LIMIT_BYTES := 262144000

.PHONY: setup system-deps browser-deps fhir-test-deps demo test bench clean sam lock container-check lambda-requirements

setup: system-deps $(VENV)/.installed

# Tesseract (OCR) and PgBouncer (Supabase's pooler, locally: `docpipe lambda`, the tests).
system-deps:
	@missing=; \
	if ! command -v tesseract >/dev/null 2>&1 || ! tesseract --list-langs 2>/dev/null | grep -qx osd; then \
	  missing="tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd"; fi; \
	command -v pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "missing: install$$missing (apt), then re-run."; exit 1; fi; \
	  echo "installing$$missing (apt)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@tesseract --version 2>&1 | head -n 1
	@pgbouncer --version 2>&1 | head -n 1

# The review page's tests drive a real browser; without one (and no way to install it) they
# skip, unless DOCPIPE_REQUIRE_BROWSER=1 (CI) makes that a failure.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "no chromium/chromedriver: the browser tests will skip (apt install chromium chromium-driver)"; exit 0; fi; \
	  echo "installing chromium and chromium-driver (apt)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

# The FHIR tests check every Bundle against HL7's R4 JSON Schema and post it to Medplum's FHIR
# transaction processor (tests/fhir_tools.py): npm packages, pinned by tests/fhir/package-lock.json,
# under tests/fhir/node_modules (test-only). Without Node those tests skip, unless
# DOCPIPE_REQUIRE_FHIR_TOOLS=1 (CI).
fhir-test-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix tests/fhir --no-audit --no-fund --ignore-scripts --loglevel=error; \
	else echo "no npm: the FHIR schema and server tests will skip (install Node.js 20+)"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,dev]'
	touch $@

demo: setup
	$(BIN)/docpipe samples $(SAMPLES)
	$(BIN)/docpipe process $(SAMPLES)/two_visits.pdf $(SAMPLES)/scanned_discharge.pdf \
	  $(SAMPLES)/fax_referral.tiff $(SAMPLES)/lab_photo.jpg $(SAMPLES)/phone_letter.heic

test: setup browser-deps fhir-test-deps
	$(BIN)/python -m pytest -q

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q aws-sam-cli
	touch $@

sam: $(SAM_VENV)/.installed
	@test -n "$(PYTHON312)" || { echo "sam build needs python3.12 (Lambda's runtime) on PATH or under pyenv"; exit 1; }
	PATH="$(dir $(PYTHON312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam validate --lint
	PATH="$(dir $(PYTHON312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build
	@for fn in .aws-sam/build/*Function; do \
	  size=$$(du -sb $$fn | cut -f1); \
	  echo "$$(basename $$fn): $$size bytes unzipped ($$((size / 1048576)) MiB), Lambda's zip limit $(LAMBDA_LIMIT_BYTES)"; \
	  test $$size -lt $(LAMBDA_LIMIT_BYTES) || { echo "over Lambda's unzipped limit: package as a container image"; exit 1; }; \
	  if find $$fn/tests $$fn/bench -maxdepth 0 2>/dev/null | grep -q .; then echo "tests or bench in the zip"; exit 1; fi; \
	  if find $$fn/docpipe_samples $$fn/shared/samples.py -maxdepth 0 2>/dev/null | grep -q .; then echo "demo samples in the zip"; exit 1; fi; \
	done; echo "no tests, bench or demo samples in the zips"

# The container's pinned, hashed dependencies for Python 3.12 on any platform (Dockerfile).
lock: $(VENV)/.installed
	$(BIN)/pip install -q uv
	$(BIN)/uv pip compile pyproject.toml --python-version 3.12 --universal --generate-hashes --no-header --quiet \
	  -o deploy/container/requirements.lock

# What the Dockerfile's pip steps do, without Docker: the lock installs with its hashes into a
# fresh Python 3.12, docpipe on top of it with no further downloads (from the files the
# Dockerfile COPYs, nothing else), every handler imports, and the demo samples are not there.
container-check:
	@test -n "$(PYTHON312)" || { echo "the container check needs python3.12"; exit 1; }
	rm -rf build/container-check
	$(PYTHON312) -m venv build/container-check
	build/container-check/bin/pip install -q --require-hashes --no-deps -r deploy/container/requirements.lock
	mkdir -p build/container-check/app
	cp -r pyproject.toml README.md handlers shared supabase build/container-check/app/
	build/container-check/bin/pip install -q --no-deps ./build/container-check/app
	build/container-check/bin/pip check
	build/container-check/bin/python -c 'import handlers.preprocess, handlers.ocr, handlers.discover, handlers.failures, shared.cli'
	@cd build && ! container-check/bin/python -c 'import docpipe_samples' 2>/dev/null || { echo "demo samples in the image"; exit 1; }
	@cd build && out=$$(container-check/bin/docpipe samples container-check/samples 2>&1); rc=$$?; echo "$$out"; \
	  test $$rc = 2 && test "$$(echo "$$out" | wc -l)" = 1 && test ! -e container-check/samples \
	  || { echo "docpipe samples in the image: wanted one line and exit 2, got exit $$rc"; exit 1; }

# deploy/lambda/requirements.txt is pyproject.toml's runtime dependencies, for `sam build`.
lambda-requirements:
	$(PYTHON) -c 'import tomllib, pathlib; deps = tomllib.loads(pathlib.Path("pyproject.toml").read_text())["project"]["dependencies"]; \
	  head = "".join(l + "\n" for l in pathlib.Path("deploy/lambda/requirements.txt").read_text().splitlines() if l.startswith("#")); \
	  pathlib.Path("deploy/lambda/requirements.txt").write_text(head + "\n".join(deps) + "\n")'

bench: setup
	$(BIN)/pip install -q -e '.[local,dev,bench]'
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python -m bench.ocr_eval
	$(BIN)/python bench/encounters_eval.py

clean:
	rm -rf $(VENV) build .docpipe .pytest_cache .aws-sam
