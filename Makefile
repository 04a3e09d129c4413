# Two commands from a fresh clone: `make demo` and `make test`.
# The venv is (re)built when missing or when pyproject.toml is newer than the last install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/omnicast demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy flows channels models sources sample web reports

bench: $(STAMP)
	$(BIN)/python bench/bench_sample.py
	$(BIN)/python bench/bench_ingest.py --reads-only
	$(BIN)/python bench/bench_recommender.py
	$(BIN)/python bench/bench_rules.py --model
	$(BIN)/python bench/bench_evaluate.py
	$(BIN)/python bench/bench_related.py
	$(BIN)/python bench/bench_dispatch.py
	$(BIN)/python bench/bench_smtp.py
	$(BIN)/python bench/bench_pull_api.py

clean:
	rm -rf $(VENV) demo omnicast.db .pytest_cache
