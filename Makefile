# Groundswell: `make run` and `make test` work on a fresh machine; everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
GS := $(VENV)/bin/groundswell
export PREFECT_SERVER_ANALYTICS_ENABLED := false
# Prefect's ephemeral API server gets 20 s to start by default; a busy 2-core machine needs more.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-dev run test bench lint clean

$(VENV)/.torch:
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; Groundswell needs Python 3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# The CPU build of torch first: a plain `torch` requirement would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	# BERTopic's dependencies must not move torch, numpy or scikit-learn under the product.
	$(PIP) freeze | grep -iE '^(torch|numpy|scipy|scikit-learn)==' > $(VENV)/bench-constraints.txt
	$(PIP) install -q -c $(VENV)/bench-constraints.txt -e '.[dev,bench]'
	touch $@

install-dev: $(VENV)/.installed-dev

run: install
	$(GS) db upgrade
	$(GS) demo load
	$(GS) analyze
	@echo "An admin key for the API and the pages (log in at http://127.0.0.1:8000/login):"
	@$(GS) keys create --role admin --name make-run | tail -n 1
	$(GS) serve --host 127.0.0.1 --port 8000

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install-dev lint
	$(PY) -m pytest

bench: $(VENV)/.installed-bench
	$(PY) -m benchmarks $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache
