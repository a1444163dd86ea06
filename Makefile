# docpipe: two commands for a fresh machine.
#   make demo   set up, then run `docpipe process` on generated sample documents
#   make test   set up, then run the whole test suite
# Both install what they need: a virtualenv with docpipe, and Tesseract through apt when it is
# missing and we may (root, or passwordless sudo).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SAMPLES ?= build/samples

.PHONY: setup system-deps demo test test-fast clean

setup: system-deps $(VENV)/.installed

system-deps:
	@if ! command -v tesseract >/dev/null 2>&1 || ! tesseract --list-langs 2>/dev/null | grep -qx osd; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else \
	    echo "Tesseract is missing: install tesseract-ocr, tesseract-ocr-eng and tesseract-ocr-osd (apt), then re-run."; exit 1; fi; \
	  echo "installing Tesseract (apt)"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd >/dev/null; \
	fi
	@tesseract --version 2>&1 | head -n 1

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[local,dev]'
	touch $@

demo: setup
	$(BIN)/docpipe samples $(SAMPLES)
	$(BIN)/docpipe process $(SAMPLES)/two_visits.pdf $(SAMPLES)/scanned_discharge.pdf \
	  $(SAMPLES)/fax_referral.tiff $(SAMPLES)/lab_photo.jpg $(SAMPLES)/phone_letter.heic

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build .docpipe .pytest_cache
