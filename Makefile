# The two commands: `make demo` runs the platform, `make test` runs every check.
# Both install what is missing and start the local services that are not running.
.PHONY: demo test setup services down lint

demo: setup
	scripts/demo.sh

test: setup
	scripts/test.sh

setup:
	scripts/bootstrap.sh
	scripts/services.sh up

services:
	scripts/services.sh up

down:
	scripts/services.sh down

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/lint-imports
