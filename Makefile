# agentrun: the two commands a fresh machine needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck check gen gen-check buf-lint buf-breaking node-example bench lock clean serve screenshots

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## Set up, start RunsService (SQLite) and ExecutionService, run an example agent live, show the stored run.
demo: $(STAMP)
	bash scripts/demo.sh

## The test suite (the same command CI runs).
test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

gen: $(STAMP)
	PYTHON=$(PY) scripts/gen_protos.sh

gen-check: $(STAMP)
	PYTHON=$(PY) scripts/gen_protos.sh --check

tools/node_modules/.bin/buf: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error

buf-lint: tools/node_modules/.bin/buf
	tools/node_modules/.bin/buf lint

## Every commit that changed protos/ against its parent (exceptions: .ci/buf-breaking-exceptions); needs full history.
buf-breaking: tools/node_modules/.bin/buf
	scripts/buf_breaking.sh

## The Node.js client example's dependencies (tests/examples/test_node_client.py runs it when they are installed).
node-example: examples/clients/node/node_modules/.installed

examples/clients/node/node_modules/.installed: examples/clients/node/package.json examples/clients/node/package-lock.json
	cd examples/clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

check: lint typecheck gen-check buf-lint buf-breaking test

serve: $(STAMP)
	$(VENV)/bin/agentrun serve all

bench: $(STAMP)
	$(PY) bench/engine.py
	$(PY) bench/runs_store.py
	$(PY) bench/export.py
	$(PY) bench/composition.py
	$(PY) bench/web.py

## Screenshots of the web console's pages into docs/images/ (taken by the browser tests; needs Chromium).
screenshots: $(STAMP)
	AGENTRUN_WEB_SCREENSHOTS=docs/images $(PY) -m pytest tests/web/test_browser.py -q

lock: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt.new
	{ echo '# Every package version, pinned (regenerate: make lock). Installed with: pip install -c constraints.txt -e ".[dev]"'; cat constraints.txt.new; } > constraints.txt && rm constraints.txt.new

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
