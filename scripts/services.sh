#!/usr/bin/env bash
# Start the local services that are not running, then migrate and (re)generate the broker's
# configuration. A service configured by URL (DATABASE_URL, REDIS_URL, MQTT_URL,
# CELERY_BROKER_URL) is left alone.
#   scripts/services.sh up             start what is missing (default)
#   scripts/services.sh down           stop what this script started under var/
#   scripts/services.sh own-rabbitmq   start the project's own RabbitMQ node; print its URL
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VAR=${HAULMIND_VAR_DIR:-$ROOT/var}
mkdir -p "$VAR/static"  # STATIC_ROOT: collectstatic fills it in production
ENV_FILE="$VAR/services.env"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
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

# --- RabbitMQ: Celery's broker for fleet's tasks and the inference pool -------------------------
# Late acks redeliver a dead worker's tasks at once (Redis would wait out its visibility timeout),
# and the pool's scheduler reads queue depths from it. Nothing configured: the RabbitMQ answering
# on 127.0.0.1:5672, else (or with HAULMIND_OWN_RABBITMQ=1) a project-local node.
RABBIT_BIN=/usr/lib/rabbitmq/bin
RABBIT_NODE=haulmind@localhost
RABBIT_PORT=5673
RABBIT_DIR="$VAR/rabbitmq"

amqp_answers() {
  # An AMQP 0-9-1 server answers the protocol header with a Connection.Start frame (type 1);
  # a bare open port (another service, a half-started node) is not enough.
  .venv/bin/python - "$1" <<'PY' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as sock:
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    sys.exit(0 if sock.recv(1) == b"\x01" else 1)
PY
}

# The project's node, run directly (the /usr/sbin wrapper switches to the rabbitmq user, who
# cannot write var/), with its own config file (the system's binds 5672 and overrides the port),
# env file (the system's names the node rabbit@localhost), Erlang cookie (HOME) and data.
rabbit() {
  env HOME="$RABBIT_DIR/home" \
    RABBITMQ_NODENAME="$RABBIT_NODE" \
    RABBITMQ_CONF_ENV_FILE="$RABBIT_DIR/rabbitmq-env.conf" \
    RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia" \
    RABBITMQ_LOG_BASE="$RABBIT_DIR/log" \
    RABBITMQ_PID_FILE="$RABBIT_DIR/rabbitmq.pid" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$RABBIT_PORT" \
    RABBITMQ_DIST_PORT=$((RABBIT_PORT + 20000)) \
    ERL_EPMD_ADDRESS=127.0.0.1 \
    "$@"
}

own_rabbitmq_running() {
  [ -f "$RABBIT_DIR/rabbitmq.pid" ] && kill -0 "$(cat "$RABBIT_DIR/rabbitmq.pid")" 2>/dev/null
}

own_rabbitmq_up() {
  if own_rabbitmq_running && amqp_answers "$RABBIT_PORT"; then return; fi
  if ! own_rabbitmq_running && port_open "$RABBIT_PORT"; then
    echo "port $RABBIT_PORT is taken by something this checkout did not start (another" \
         "checkout's RabbitMQ?); stop it, or set CELERY_BROKER_URL to use it" >&2
    return 1
  fi
  [ -x "$RABBIT_BIN/rabbitmq-server" ] || {
    echo "RabbitMQ is not installed (run scripts/bootstrap.sh: Debian's rabbitmq-server)" >&2
    return 1
  }
  mkdir -p "$RABBIT_DIR/home" "$RABBIT_DIR/mnesia" "$RABBIT_DIR/log"
  cat > "$RABBIT_DIR/rabbitmq.conf" <<CONF
# Generated by scripts/services.sh: the project's own node, loopback only.
listeners.tcp.local = 127.0.0.1:$RABBIT_PORT
distribution.listener.interface = 127.0.0.1
loopback_users.guest = true
CONF
  : > "$RABBIT_DIR/rabbitmq-env.conf"
  [ -f "$RABBIT_DIR/enabled_plugins" ] || echo "[]." > "$RABBIT_DIR/enabled_plugins"
  if [ ! -f "$RABBIT_DIR/home/.erlang.cookie" ]; then
    (umask 077; head -c 30 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$RABBIT_DIR/home/.erlang.cookie")
    chmod 400 "$RABBIT_DIR/home/.erlang.cookie"
  fi
  say "starting RabbitMQ (project-local node $RABBIT_NODE, 127.0.0.1:$RABBIT_PORT)"
  rabbit "$RABBIT_BIN/rabbitmq-server" -detached
  for _ in $(seq 1 120); do amqp_answers "$RABBIT_PORT" && return 0; sleep 0.5; done
  echo "RabbitMQ did not answer on port $RABBIT_PORT; see $RABBIT_DIR/log" >&2
  return 1
}

own_rabbitmq_url() { echo "amqp://guest:guest@127.0.0.1:$RABBIT_PORT//"; }

celery_broker() {
  # Every process (fleet's Celery, slice workers, nodes, the scheduler, the benches) reads
  # CELERY_BROKER_URL; var/services.env holds the one chosen here (demo.sh and test.sh source it,
  # and fleet/settings.py and inference/config.py read it when the environment has none).
  : > "$ENV_FILE"
  if [ -n "${CELERY_BROKER_URL:-}" ]; then return; fi  # configured: used as given
  local url
  if [ "${HAULMIND_OWN_RABBITMQ:-0}" != 1 ] && amqp_answers 5672; then
    url="amqp://guest:guest@127.0.0.1:5672//"
  else
    own_rabbitmq_up
    url=$(own_rabbitmq_url)
  fi
  echo "export CELERY_BROKER_URL=$url" >> "$ENV_FILE"
}

own-rabbitmq() {
  own_rabbitmq_up
  own_rabbitmq_url
}

mosquitto_up() {
  # Writes the configuration and the logins' initial state (the dynamic-security plugin's file)
  # from the credential table; with the broker running, reconciles its logins instead.
  .venv/bin/python manage.py broker_config
  if [ -n "${MQTT_URL:-}" ]; then return; fi
  local dir="$VAR/mosquitto" pidfile="$VAR/mosquitto/mosquitto.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    # A broker started from an older configuration is restarted (sessions persist on disk).
    if cmp -s "$dir/mosquitto.conf" "$dir/mosquitto.conf.running"; then return; fi
    say "restarting the project's Mosquitto: its configuration changed"
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 100); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.1; done
    .venv/bin/python manage.py broker_config >/dev/null  # the state file, now that it is stopped
  fi
  if port_open 1884; then
    echo "port 1884 is taken by a broker this checkout did not start (another checkout?);" \
         "stop it, or set MQTT_URL to use it" >&2
    return 1
  fi
  say "starting the project's Mosquitto (127.0.0.1:1884)"
  cp "$dir/mosquitto.conf" "$dir/mosquitto.conf.running"
  mosquitto -c "$dir/mosquitto.conf" -d
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
  if own_rabbitmq_running; then
    # Never epmd: it is shared with the system's node.
    rabbit "$RABBIT_BIN/rabbitmqctl" -n "$RABBIT_NODE" stop >/dev/null && say "stopped RabbitMQ"
  fi
  if [ -f "$VAR/postgres/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$VAR/postgres" -m fast stop >/dev/null && say "stopped PostgreSQL"
  fi
  return 0
}

"${1:-up}"
