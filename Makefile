# The two commands: `make demo` runs the whole cloud here with a demo VM; `make test` runs every test.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: demo test setup test-setup lint unit integration system bench conformance clean

demo: setup
	$(PY) scripts/demo.py

test: test-setup lint
	$(PY) scripts/run_tests.py

setup:
	bash scripts/bootstrap.sh

test-setup:
	WITH_TEST_DEPS=1 bash scripts/bootstrap.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/lint-imports

unit: test-setup
	$(PY) -m pytest -m unit

integration: test-setup
	$(PY) -m pytest -m integration

system: test-setup
	$(PY) -m pytest -m system

# Tempest's compute API tests against a cloud of its own (docs/conformance.md); the classes that make their
# own projects and users run second, with dynamic credentials. About ten minutes.
conformance: setup
	@status=0; \
	$(PY) scripts/conformance.py --exclude-list scripts/conformance-dynamic.txt || status=1; \
	$(PY) scripts/conformance.py --dynamic-credentials --include-list scripts/conformance-dynamic.txt \
		--results var/conformance/results-dynamic.json || status=1; \
	exit $$status

bench: test-setup
	@for script in bench/*.py; do [ $$script = bench/compare.py ] || $(PY) $$script || exit 1; done

clean:
	rm -rf var/compute var/cloud.sqlite3 var/static var/celerybeat-schedule tests/artifacts
