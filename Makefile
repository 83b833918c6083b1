# Two entry points on a fresh machine: `make run` (the app) and `make test` (the test suite).
# Both create .venv, install the pinned requirements and, where apt and root are available,
# the Debian packages: Fashion-MNIST's IDX files, Tux Paint's clip-art stamps (semantic colour folders)
# and Chromium for the browser tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system-packages run demo test lint bench clean

setup: $(STAMP) system-packages

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Optional system packages: installed when apt-get and root are there, skipped otherwise.
system-packages:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] || [ ! -d /usr/share/tuxpaint/stamps ] || ! command -v chromium >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get install -y -q dataset-fashion-mnist tuxpaint-stamps-default chromium >/dev/null 2>&1 || \
	     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist tuxpaint-stamps-default chromium >/dev/null 2>&1)) \
	    || echo "note: could not apt-get install dataset-fashion-mnist tuxpaint-stamps-default chromium; continuing without them"; \
	  else echo "note: Fashion-MNIST / Tux Paint stamps / Chromium not installed (needs apt-get and root); continuing"; fi; \
	fi

run: setup
	@if [ -f app.py ]; then $(VENV)/bin/streamlit run app.py; \
	else $(PY) -m scan_core train --dataset digits --out runs/digits-demo; fi

test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(VENV)/bin/ruff check scan_core ui pages tests bench app.py
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/bench_pipeline.py

clean:
	rm -rf $(VENV) .pytest_cache
