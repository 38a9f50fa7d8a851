# Two entry points: `make run` (index the sample corpus, answer, serve) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
QUESTION ?= What happens when the quota runs out while indexing?

.PHONY: run test lint install install-runtime clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "iorag needs Python 3.11 or newer (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime dependencies only (what `make run` needs); the test extras come with `make install`/`make test`.
$(VENV)/.installed-runtime: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@ $(VENV)/.installed-runtime

install-runtime: $(VENV)/.installed-runtime

install: $(VENV)/.installed

run: install-runtime
	$(BIN)/iorag index corpora/
	$(BIN)/iorag ask "$(QUESTION)"
	@echo
	@echo "Serving on http://127.0.0.1:8000 (OpenAPI docs at /docs). Ask it from another terminal:"
	@echo "  curl -s http://127.0.0.1:8000/v1/ask -H 'content-type: application/json' -d '{\"question\": \"How do I switch to another embedding model?\"}'"
	$(BIN)/iorag serve

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check indexer service tests bench
	$(BIN)/mypy indexer service

clean:
	rm -rf $(VENV) .iorag .iorag-eval .pytest_cache .hypothesis
