#!/usr/bin/env bash
# Start the local services that are not running, then migrate and (re)generate the broker's
# configuration. A service configured by URL (DATABASE_URL, REDIS_URL, MQTT_URL) is left alone.
#   scripts/services.sh up     start what is missing (default)
#   scripts/services.sh down   stop what this script started under var/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VAR=${HAULMIND_VAR_DIR:-$ROOT/var}
mkdir -p "$VAR/static"  # STATIC_ROOT: collectstatic fills it in production
ENV_FILE="$VAR/services.env"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  echo "$2 did not open port $1; see its log under $VAR" >&2; return 1
}
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
PG_BIN=/usr/lib/postgresql/15/bin

postgres_up() {
  if [ -n "${DATABASE_URL:-}" ]; then return; fi
  if ! port_open 5432; then
    local data="$VAR/postgres"
    if [ ! -f "$data/PG_VERSION" ]; then
      say "creating a project-local PostgreSQL cluster in $data"
      mkdir -p "$data" "$VAR/run"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data" "$VAR/run"
      as_postgres "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    say "starting PostgreSQL (project-local, 127.0.0.1:5432)"
    as_postgres "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w start \
      -o "-c listen_addresses=127.0.0.1 -c port=5432 -c unix_socket_directories=$VAR/run" >/dev/null
  fi
  if ! psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='haulmind'" | grep -q 1; then
    say "creating database haulmind"
    psql -h 127.0.0.1 -U postgres -qc "create database haulmind"
  fi
  # GeoDjango would create the extension on first migrate; doing it here fails early and
  # clearly when the PostGIS package is missing.
  psql -h 127.0.0.1 -U postgres -d haulmind -qc "create extension if not exists postgis" 2>&1 \
    | grep -v "already exists" || true
}

redis_up() {
  if [ -n "${REDIS_URL:-}" ] || port_open 6379; then return; fi
  say "starting Redis (project-local, 127.0.0.1:6379)"
  mkdir -p "$VAR/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$VAR/redis" --logfile "$VAR/redis/redis.log" --pidfile "$VAR/redis/redis.pid"
  wait_port 6379 Redis
}

celery_broker() {
  # RabbitMQ where it runs: late acks redeliver a dead worker's tasks at once (Redis waits out
  # its visibility timeout). Otherwise Celery uses Redis.
  : > "$ENV_FILE"
  if [ -z "${CELERY_BROKER_URL:-}" ] && port_open 5672; then
    echo "export CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672//" >> "$ENV_FILE"
  fi
}

mosquitto_up() {
  .venv/bin/python manage.py broker_config
  if [ -n "${MQTT_URL:-}" ]; then return; fi
  local pidfile="$VAR/mosquitto/mosquitto.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  if port_open 1884; then
    echo "port 1884 is taken by a broker this checkout did not start (another checkout?);" \
         "stop it, or set MQTT_URL to use it" >&2
    return 1
  fi
  say "starting the project's Mosquitto (127.0.0.1:1884)"
  mosquitto -c "$VAR/mosquitto/mosquitto.conf" -d
  wait_port 1884 Mosquitto
}

up() {
  postgres_up
  redis_up
  celery_broker
  .venv/bin/python manage.py migrate --no-input -v 0
  mosquitto_up
}

down() {
  local pidfile="$VAR/mosquitto/mosquitto.pid"
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null && say "stopped Mosquitto"
  [ -f "$VAR/redis/redis.pid" ] && kill "$(cat "$VAR/redis/redis.pid")" 2>/dev/null && say "stopped Redis"
  if [ -f "$VAR/postgres/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$VAR/postgres" -m fast stop >/dev/null && say "stopped PostgreSQL"
  fi
  return 0
}

"${1:-up}"
