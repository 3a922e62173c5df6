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

# Arguments (a path, -k, an option) run them in one pytest, as given.
if [ $# -gt 0 ]; then
  step "pytest $*"
  exec pytest --durations=30 "$@"
fi

# The whole suite runs as two pytest processes side by side: CI's machine has two cores, and the
# live tests (browser, broker, workers) spend much of their time waiting. The in-process lane
# holds tests that start no process and reach no broker (the API contract, the audit trail, the
# map, the pool's API, the wire format, training), each lane on a test database, Celery queue,
# channel-layer group prefix, Redis key prefix and pool prefix of its own; the other lane runs
# everything else.
IN_PROCESS=(
  tests/platform/test_api_contract.py tests/audit tests/mine tests/pool tests/protocol
  tests/learning/test_training.py tests/simulator/test_engine.py tests/simulator/test_world.py
  tests/models/test_backbone.py tests/models/test_checkpoint.py tests/models/test_heads.py
)
lane=haulmind-tests-in-process
lane_log=test-artifacts/pytest-in-process.log
step "pytest: the in-process lane in the background (its report follows the other's)"
(
  export DATABASE_TEST_NAME="${DATABASE_TEST_NAME:-test_haulmind}_in_process" \
    CELERY_TASK_DEFAULT_QUEUE=$lane REDIS_KEY_PREFIX=$lane \
    HAULMIND_CHANNELS_PREFIX=$lane:live HAULMIND_POOL_PREFIX=$lane:pool
  exec pytest -p no:cacheprovider --durations=15 "${IN_PROCESS[@]}"
) >"$lane_log" 2>&1 &
lane_pid=$!
trap 'kill $lane_pid 2>/dev/null || true' EXIT
ignored=()
for path in "${IN_PROCESS[@]}"; do ignored+=("--ignore=$path"); done
step "pytest: the services lane"
set +e
pytest --durations=30 "${ignored[@]}"
services_rc=$?
wait $lane_pid
in_process_rc=$?
set -e
step "pytest: the in-process lane (${IN_PROCESS[*]})"
cat "$lane_log"
echo "services lane: exit $services_rc; in-process lane: exit $in_process_rc"
[ "$services_rc" -eq 0 ] && [ "$in_process_rc" -eq 0 ]
