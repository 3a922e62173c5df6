#!/usr/bin/env bash
# The platform on this machine: the demo mine, trucks driving (simulator), ingest, the outbox's
# delivery, a Celery worker with beat, the inference pool (a scheduler and two worker nodes
# serving the champion heads), the ASGI server on :8000.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
[ -f var/services.env ] && . var/services.env
export PATH="$PWD/.venv/bin:$PATH"
mkdir -p var/log

python manage.py create_demo_mine --trucks "${DEMO_TRUCKS:-100}"
python manage.py ensure_demo_admin
# The FMS assigns each truck its next loading unit and dump (fleet.control.dispatching).
python manage.py dispatch cerro-rojo on
# The domain networks: trained on the first run (about 2 minutes on 2 cores), kept after.
python manage.py train_models --if-missing
# The champion heads as the pool's deployments (trajectory latency-critical, the rest best-effort).
python manage.py deploy_models

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

celery -A fleet worker --beat --loglevel=INFO --concurrency=1 -n "demo@%h" > var/log/celery.log 2>&1 &
pids+=($!)
python manage.py ingest --replica demo > var/log/ingest.log 2>&1 &
pids+=($!)
python manage.py deliver_commands > var/log/outbox.log 2>&1 &
pids+=($!)
# The inference pool: one scheduler and two worker nodes, each a supervisor of its slice workers
# (two quarter-CPU slices per node here; on a GPU node e.g. HAULMIND_SLICES="cuda:0=4").
python -m inference.scheduler > var/log/pool-scheduler.log 2>&1 &
pids+=($!)
for node in a b; do
    python -m inference.node --name "demo-node-$node" \
        --slices "${HAULMIND_SLICES:-cpu=0.25,0.25}" --log-dir var/log \
        > "var/log/pool-node-$node.log" 2>&1 &
    pids+=($!)
done
# The trucks ask the FMS for each one-lane section and wait for its grant (fleet.control.traffic;
# the Celery worker's beat sweeps the permissions every 2 s).
python manage.py simulate --site cerro-rojo --trucks "${DEMO_TRUCKS:-100}" --hz "${DEMO_HZ:-2}" \
    --seed 7 --labels var/log/fault-labels.jsonl > var/log/simulator.log 2>&1 &
pids+=($!)
# Learning on site: once the demo mine has some history of its own (DEMO_SHADOW_AFTER_S, 10 min
# by default), the simulator's fault-label log is imported as the workshop's records (marked as
# imported from the simulator) and challengers are trained from the mine's own history
# (train_models --site); they run in shadow beside the champions (admin: Model versions ->
# Champions and challengers in shadow; API: /api/v1/models/shadow/).
(
    started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    sleep "${DEMO_SHADOW_AFTER_S:-600}"
    python manage.py import_fault_labels var/log/fault-labels.jsonl --site cerro-rojo
    python manage.py train_models --site cerro-rojo --since "$started" \
        --head-seconds "${DEMO_SHADOW_HEAD_S:-8}"
    python manage.py deploy_models
) > var/log/onsite-training.log 2>&1 &
pids+=($!)

printf '\n\033[1mHaulmind is up: http://127.0.0.1:8000/  (admin: /admin/, API docs: /api/docs/)\033[0m\n'
printf 'Trucks: %s driving at Cerro Rojo. Logs: var/log/. Stop with Ctrl-C.\n\n' "${DEMO_TRUCKS:-100}"
python manage.py serve --host 127.0.0.1 --port 8000
