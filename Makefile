# Every target creates .venv on first use, so each works on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/ad_click_join.py

test: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check streamcore tests benchmarks examples
	$(BIN)/ruff format --check streamcore tests benchmarks examples

BENCHMARKS := throughput state_backends prefix_vs_range join_throughput checkpoints catch_up windows kafka_throughput scale_out lookup_join sql_vs_datastream

bench: $(STAMP)
	@for b in $(BENCHMARKS); do echo "== $$b"; $(BIN)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
