#!/usr/bin/env bash
# The whole check, as CI runs it: lint, import layering, migrations, then pytest on real services.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f var/services.env ] && . var/services.env
export PATH="$PWD/.venv/bin:$PATH"
# The suite's Celery tasks go to a queue of their own, emptied when it starts (tests/conftest.py),
# never into the demo's: tasks enqueued by tests that run no worker must not pile up there.
export CELERY_TASK_DEFAULT_QUEUE=haulmind-tests
# The suite's connections, and those of every process it starts (libpq reads PGOPTIONS), commit
# without waiting for the WAL flush: 2.1 ms -> 0.4 ms per commit on this project's VM. Only a
# PostgreSQL crash could lose such a commit, and no test crashes PostgreSQL.
export PGOPTIONS="-c synchronous_commit=off"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
step "ruff"
ruff check .
ruff format --check .
step "import contracts (models <- inference <- fleet)"
lint-imports
step "migrations are complete"
python manage.py makemigrations --check --dry-run
step "frontend: type check and unit tests (vitest)"
(cd frontend && npx --no-install tsc --noEmit && npm test --silent)
step "deploy/: every overlay rendered (kubectl kustomize) and every manifest validated offline"
command -v kubectl >/dev/null || {
  echo "kubectl is not installed: deploy/ cannot be rendered (scripts/bootstrap.sh installs it on x86-64 Linux)" >&2
  exit 1
}
pytest -q -p no:cacheprovider tests/platform/test_deploy.py
mkdir -p test-artifacts
# The path a machine without a system RabbitMQ takes: the project's own node (started here if it
# is not running), carrying the pool's round trip (request -> slice worker -> result).
step "the pool's round trip on the project's own RabbitMQ node"
CELERY_BROKER_URL=$(scripts/services.sh own-rabbitmq) pytest -q -p no:cacheprovider \
  "tests/inference/test_worker.py::test_a_worker_serves_a_burst_from_rabbitmq_in_batched_forward_passes"
step "pytest"
pytest --durations=30 "$@"
