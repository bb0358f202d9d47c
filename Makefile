# The README's commands. `make serve` and `make test` each set up everything they need first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test check lint typecheck setup clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## Serve the embedded default (SQLite + ./data) on http://127.0.0.1:8080/fhir
serve: $(STAMP)
	scripts/serve-deps.sh
	$(BIN)/fhirbin serve

## Run the whole test suite (installs the Debian packages the tests need first)
test: $(STAMP)
	scripts/system-deps.sh
	$(BIN)/python -m pytest

## Lint, type-check and test
check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

## Regenerate the configuration table in docs/configuration.md and README.md
docs: $(STAMP)
	$(BIN)/fhirbin config-docs --write

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Benchmark fhirbin against nginx (bench/README.md); a quick run:
##   make bench BENCH_ARGS="--duration 2 --size 64M --json-size 16M --runs 2"
.PHONY: bench
BENCH_ARGS ?=
INSPECT_BENCH_ARGS ?=
bench: $(STAMP)
	bench/setup.sh $(VENV)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	PYTHONPATH=. $(BIN)/python bench/inspection.py $(INSPECT_BENCH_ARGS) | tee bench/results/inspection-latest.md
