#!/usr/bin/env bash
# The platform on this machine: the demo mine, a Celery worker, the ASGI server on :8000.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f var/services.env ] && . var/services.env
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p var/log

python manage.py create_demo_mine --trucks "${DEMO_TRUCKS:-100}"
python manage.py ensure_demo_admin

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

celery -A fleet worker --beat --loglevel=INFO --concurrency=1 -n "demo@%h" > var/log/celery.log 2>&1 &
pids+=($!)

printf '\n\033[1mHaulmind is up: http://127.0.0.1:8000/admin/  (API docs: /api/docs/)\033[0m\n'
printf 'Logs: var/log/. Stop with Ctrl-C.\n\n'
python manage.py serve --host 127.0.0.1 --port 8000
