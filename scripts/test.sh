#!/usr/bin/env bash
# The whole check, as CI runs it: lint, import layering, migrations, then pytest on real services.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f var/services.env ] && . var/services.env
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }
step "ruff"
ruff check .
ruff format --check .
step "import contracts (models <- inference <- fleet)"
lint-imports
step "migrations are complete"
python manage.py makemigrations --check --dry-run
step "pytest"
mkdir -p test-artifacts
pytest "$@"
