# Two commands matter: `make demo` (the email pipeline end to end on SQLite) and
# `make test` (lint, types and the whole test suite). Only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNNER := $(BIN)/runner
DEMO_DB := sqlite:///var/demo.db
PIPELINE := pipelines/email.yaml

.PHONY: demo test lint typecheck clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	@rm -f var/demo.db var/demo.db-wal var/demo.db-shm var/provider.sqlite*
	@echo "== 1. validate the pipeline"
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) check $(PIPELINE)
	@echo "== 2. enqueue one job (prints its id), then a file of 16 (a duplicate, a flaky, two poison)"
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) enqueue $(PIPELINE) email.send --payload '{"userId": 1, "templateId": "welcome", "to": "first@example.com"}'
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) enqueue $(PIPELINE) email.send --jsonl samples/email.jsonl
	@echo "== 3. a producer mistake is refused with exit 65 (a secret in the payload, a bad field)"
	-RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) enqueue $(PIPELINE) email.send --payload '{"userId": "x", "templateId": "welcome", "to": "a@example.com", "password": "hunter2"}'
	@echo "== 4. run workers until the queue is idle (retries with backoff, poison jobs to the DLQ)"
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) up $(PIPELINE) --until-idle --processes 2
	@echo "== 5. the dead-letter queue, then the status table"
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) dlq list $(PIPELINE)
	RUNNER_DATABASE_URL=$(DEMO_DB) $(RUNNER) status $(PIPELINE)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
