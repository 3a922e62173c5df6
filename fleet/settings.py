"""Haulmind settings: one module, driven by the environment.

Nothing configured gives the embedded default: the PostgreSQL + PostGIS, Redis and project-own
Mosquitto that ``make demo`` / ``make test`` find or start on loopback. ``DATABASE_URL``,
``REDIS_URL``, ``MQTT_URL``, ``CELERY_BROKER_URL`` and ``SECRET_KEY`` (each also as ``*_FILE``)
point it at real services. See docs/operations.md.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from fleet.conf import env_bool, env_int, env_list, env_required, env_str, env_url
from inference import config as inference_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HAULMIND_VAR_DIR") or BASE_DIR / "var")
# Where training writes checkpoints (safetensors + manifest + ONNX), one directory per name and
# version: a working directory of this checkout. Registering a version publishes it from here
# into the artifact store below, and only the store's copy is served.
MODELS_DIR = Path(env_str("HAULMIND_MODELS_DIR") or VAR_DIR / "models")
# The artifact store (models.artifacts): registered checkpoints by sha256, the registry's rows
# holding paths relative to it. HAULMIND_ARTIFACT_ROOT: a directory every host mounts (default
# var/artifacts) or s3://bucket/prefix, with HAULMIND_ARTIFACT_ENDPOINT_URL for an
# S3-compatible store other than AWS (credentials: boto3's AWS_* variables). Each host fetches
# what it loads into HAULMIND_ARTIFACT_CACHE (default var/artifact-cache), verified there.
ARTIFACT_ROOT = inference_config.artifact_root()
ARTIFACT_ENDPOINT_URL = inference_config.artifact_endpoint()
ARTIFACT_CACHE = Path(inference_config.artifact_cache())
# Each truck's telemetry window goes to the model pool at most this often (seconds).
INFERENCE_INTERVAL_S = env_int("INFERENCE_INTERVAL_S", 10, minimum=1)
# Live predictions (learning.Prediction: one row per head per truck per interval) older than this
# many days are purged hourly by Celery beat (learning.purge_predictions). At least a day: the
# fault decision rule reads a truck's last few decisions.
PREDICTION_RETENTION_DAYS = env_int("PREDICTION_RETENTION_DAYS", 7, minimum=1)

ENVIRONMENT = env_str("HAULMIND_ENV", "development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured(
        f"HAULMIND_ENV={ENVIRONMENT!r} is not known; expected development or production"
    )
PRODUCTION = ENVIRONMENT == "production"
DEBUG = env_bool("DEBUG", default=not PRODUCTION)

if PRODUCTION:
    SECRET_KEY = env_required("SECRET_KEY", "a random string of at least 50 characters")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY is too short; expected at least 50 characters")
else:
    SECRET_KEY = (
        env_str("SECRET_KEY") or "haulmind-development-only-key-never-use-in-production-0123456789"
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set; expected a comma-separated list of host names"
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_gis",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "fleet",  # the project package: platform commands (serve), shared templates and static files
    "fleet.accounts",
    "fleet.mine",
    "fleet.vehicles",
    "fleet.telemetry",
    "fleet.control",
    "fleet.simulator",
    "fleet.learning",
    "fleet.live",
    "fleet.pool",
]

MIDDLEWARE = [
    # /healthz and /readyz, before host validation and the TLS redirect (probes come to the pod's
    # own address over plain HTTP).
    "fleet.health.HealthMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fleet.urls"
ASGI_APPLICATION = "fleet.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "fleet" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: PostgreSQL + PostGIS, the one engine everywhere -----------------------------------
DATABASE_URL = env_url(
    "DATABASE_URL",
    "postgis://postgres@127.0.0.1:5432/haulmind",
    schemes=("postgis", "postgres", "postgresql"),
    what="a PostGIS URL such as postgis://user:password@host:5432/dbname",
)
if not urlsplit(DATABASE_URL).path.strip("/"):
    raise ImproperlyConfigured(
        "DATABASE_URL names no database; expected postgis://host:5432/dbname"
    )
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
# Whatever scheme was given, GeoDjango needs its PostGIS backend.
DATABASES["default"]["ENGINE"] = "django.contrib.gis.db.backends.postgis"
DATABASES["default"]["OPTIONS"] = {
    "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
}
DATABASES["default"]["TEST"] = {
    "NAME": env_str("DATABASE_TEST_NAME") or f"test_{DATABASES['default']['NAME']}"
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Debian 12 ships GDAL 3.6, which cannot block network access while reading spatial
# references; map files are parsed from GeoJSON coordinates only and never name remote CRSs.
SILENCED_SYSTEM_CHECKS = ["gis.W001"]

# --- Redis: latest state, Channels layer, cache ----------------------------------------------------
REDIS_URL = env_url(
    "REDIS_URL", inference_config.redis_url(), schemes=("redis", "rediss"), what="a Redis URL"
)
# Prefix of every Redis key Haulmind writes itself (latest state per truck, scheduler tables, the
# cache), so several deployments, or the tests, can share one Redis.
REDIS_KEY_PREFIX = env_str("REDIS_KEY_PREFIX", "haulmind")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
    }
}
CHANNEL_REDIS_READ_TIMEOUT_S = (
    15  # > channels_redis' 5 s BZPOPMIN (RedisChannelLayer.brpop_timeout)
)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # redis-py 8 gives every read a 5 s socket timeout by default, the same 5 s that
        # channels_redis blocks in BZPOPMIN waiting for a socket's next event: a socket with
        # nothing to receive for 5 s had the read time out and its consumer die (the dashboard's
        # link dropped whenever its site went quiet). The read must outlast the blocking pop.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": CHANNEL_REDIS_READ_TIMEOUT_S}],
            # The live groups are named by site id: deployments (or test runs) sharing a Redis
            # need their own prefix, or one's site 1 hears the other's.
            "prefix": env_str("HAULMIND_CHANNELS_PREFIX", "haulmind:live"),
        },
    }
}

# --- MQTT: the project's own Mosquitto by default (the system one is anonymous) --------------------
MQTT_URL = env_url(
    "MQTT_URL",
    "mqtt://127.0.0.1:1884",
    schemes=("mqtt", "mqtts"),
    what="an MQTT 5 broker URL such as mqtt://host:1883 or mqtts://host:8883",
)
if urlsplit(MQTT_URL).username:
    raise ImproperlyConfigured(
        "MQTT_URL names a user; expected the broker's address only (mqtt://host:port): each FMS "
        "service logs in as its own user, haulmind-ingest, haulmind-outbox and haulmind-admin, "
        "with MQTT_INGEST_PASSWORD, MQTT_OUTBOX_PASSWORD and MQTT_ADMIN_PASSWORD"
    )
# The services' broker passwords (fleet/vehicles/broker.py): configured, else generated into
# var/mosquitto for the project's own broker.
MQTT_SERVICE_PASSWORDS = {
    name: env_str(f"MQTT_{name.upper()}_PASSWORD") for name in ("ingest", "outbox", "admin")
}
# The FMS creates and removes machines' logins on the broker through Mosquitto's
# dynamic-security plugin. Off for a broker that manages its logins another way.
MQTT_MANAGE_LOGINS = env_bool("MQTT_MANAGE_LOGINS", True)
MQTT_TOPIC_ROOT = env_str("MQTT_TOPIC_ROOT", "iso23725/v1")
# The inference pool's state (inference.pool.PoolStore: heartbeats, deployments, drains, the
# plan), read by the pool API, its admin page and /metrics. Same variables as the nodes use.
POOL_REDIS_URL = env_url(
    "HAULMIND_POOL_REDIS_URL", REDIS_URL, schemes=("redis", "rediss"), what="a Redis URL"
)
POOL_PREFIX = env_str("HAULMIND_POOL_PREFIX", "haulmind:pool")
# The pool's utilisation is sampled every minute into PostgreSQL and kept this long.
POOL_SAMPLE_RETENTION_DAYS = env_int("POOL_SAMPLE_RETENTION_DAYS", 14, minimum=1)

# --- Ingest: time rules, batching, retention (docs/protocol.md, docs/operations.md) ----------------
# A truck clock this far ahead of ours is wrong, not early: the message is refused.
INGEST_CLOCK_SKEW_S = env_int("INGEST_CLOCK_SKEW_S", 5, minimum=0, maximum=3600)
# Older than this on arrival: stored but marked late (a back-filled buffer), never used live.
INGEST_LATE_AFTER_S = env_int("INGEST_LATE_AFTER_S", 10, minimum=1)
# Older than this: refused. A truck out of coverage uploads at most this much of its buffer.
INGEST_BACKFILL_S = env_int("INGEST_BACKFILL_S", 24 * 3600, minimum=60, maximum=7 * 24 * 3600)
INGEST_RETENTION_DAYS = env_int("INGEST_RETENTION_DAYS", 30, minimum=2)
INGEST_BATCH_SIZE = env_int("INGEST_BATCH_SIZE", 2000, minimum=1, maximum=50_000)
INGEST_BATCH_DELAY_MS = env_int("INGEST_BATCH_DELAY_MS", 50, minimum=1, maximum=5000)
# Messages held in memory between the MQTT thread and the writer; when full the MQTT thread
# waits, so a slow database slows the broker's delivery instead of growing memory.
INGEST_QUEUE_LIMIT = env_int("INGEST_QUEUE_LIMIT", 20_000, minimum=100)
INGEST_RECEIVE_MAXIMUM = env_int("INGEST_RECEIVE_MAXIMUM", 10_000, minimum=10, maximum=65_535)
INGEST_QUARANTINE_ROWS = env_int("INGEST_QUARANTINE_ROWS", 10_000, minimum=10)
# This ingest replica's stable name (its broker session), when --replica does not give one.
INGEST_REPLICA = env_str("INGEST_REPLICA")
# A known replica without a heartbeat for this long is reported silent (its session is
# collecting messages nobody stores).
INGEST_REPLICA_SILENT_S = env_int("INGEST_REPLICA_SILENT_S", 60, minimum=10)
# A known replica without a heartbeat for this long is adopted by a running one: its broker
# session taken over, drained into the history and ended, as `ingest --retire` does (0: never;
# an operator retires by hand). At least three beats (15 s), the time after which a replica's
# own name may start elsewhere: a replica that is merely slow is never adopted.
INGEST_REPLICA_ADOPT_S = env_int("INGEST_REPLICA_ADOPT_S", 120, minimum=0)
if 0 < INGEST_REPLICA_ADOPT_S < 15:
    raise ImproperlyConfigured(
        f"INGEST_REPLICA_ADOPT_S={INGEST_REPLICA_ADOPT_S} is too short; expected 0 (off) or "
        "at least 15 seconds (three heartbeats)"
    )
INGEST_METRICS_PORT = env_int("INGEST_METRICS_PORT", 9108, minimum=0, maximum=65_535)
# The sites whose commands this outbox delivery process publishes (comma-separated slugs): in the
# site-per-broker layout each pit's broker has its own delivery process. Unset: every site's.
DELIVERY_SITES = env_list("DELIVERY_SITES", []) or None
# The outbox: a command unanswered after COMMAND_TTL_S expires; attempts are retried after
# COMMAND_RETRY_S, doubling up to COMMAND_RETRY_MAX_S.
COMMAND_TTL_S = env_int("COMMAND_TTL_S", 300, minimum=5)
COMMAND_RETRY_S = env_int("COMMAND_RETRY_S", 2, minimum=1)
COMMAND_RETRY_MAX_S = env_int("COMMAND_RETRY_MAX_S", 30, minimum=1)
# Dispatch (fleet.control.dispatching, docs/control-dispatch.md): the flow plan is solved again
# at least this often (and at once when a loading unit goes down or comes back); an en-route
# truck is moved to another loading unit only when that saves this many seconds; an ETA
# prediction older than DISPATCH_ETA_MAX_AGE_S is not used; the time a loading unit stands
# waiting for a truck counts DISPATCH_IDLE_CREDIT_PCT % in its favour (its need).
DISPATCH_REPLAN_S = env_int("DISPATCH_REPLAN_S", 300, minimum=10)
DISPATCH_SWITCH_S = env_int("DISPATCH_SWITCH_S", 60, minimum=0)
DISPATCH_ETA_MAX_AGE_S = env_int("DISPATCH_ETA_MAX_AGE_S", 60, minimum=1)
DISPATCH_IDLE_CREDIT_PCT = env_int("DISPATCH_IDLE_CREDIT_PCT", 50, minimum=0, maximum=100)
DISPATCH_TRUCK_EFFICIENCY_PCT = env_int(
    "DISPATCH_TRUCK_EFFICIENCY_PCT", 90, minimum=10, maximum=100
)
# The flow plan loads units and dumps to this share of their rate (queues); road-graph times at
# mapped speeds are scaled by these (loaded, empty) to match the site's haul cycles.
DISPATCH_UTILISATION_PCT = env_int("DISPATCH_UTILISATION_PCT", 85, minimum=10, maximum=100)
DISPATCH_HAUL_TIME_PCT = env_int("DISPATCH_HAUL_TIME_PCT", 100, minimum=50, maximum=1000)
DISPATCH_RETURN_TIME_PCT = env_int("DISPATCH_RETURN_TIME_PCT", 100, minimum=50, maximum=1000)
# The outbox's delivery publishes FmsHeartbeatV1 on each site's fleet topic this often; a truck
# that hears none for its own timeout (the simulator: --heartbeat-timeout, 5 s) stops itself.
FMS_HEARTBEAT_MS = env_int("FMS_HEARTBEAT_MS", 1000, minimum=100)

# --- Alerts and live compliance (fleet.control.alerts, .compliance; docs/control-alerts.md) -------
# A truck inside an active exclusion zone, or faster than the lowest speed limit of the zones it is
# in (plus CONTROL_SPEED_TOLERANCE_KMH), raises an alert as its message is admitted; these say
# whether a stop command follows.
# Off: the live rules are not run at all (an operational switch, and the "before" of the bench).
CONTROL_LIVE_RULES = env_bool("CONTROL_LIVE_RULES", True)
CONTROL_STOP_ON_EXCLUSION = env_bool("CONTROL_STOP_ON_EXCLUSION", True)
CONTROL_STOP_ON_SPEEDING = env_bool("CONTROL_STOP_ON_SPEEDING", False)
CONTROL_SPEED_TOLERANCE_KMH = env_int("CONTROL_SPEED_TOLERANCE_KMH", 3, minimum=0)
# The same finding on the same truck is acted on at most once per this many seconds per ingest
# replica (a truck at 10 Hz inside a zone is one alert, folded, not ten a second).
CONTROL_ALERT_REPEAT_S = env_int("CONTROL_ALERT_REPEAT_S", 30, minimum=0)
# How old the ingest process's copy of the active zones may be (one query per this, not per message).
CONTROL_ZONE_INDEX_S = env_int("CONTROL_ZONE_INDEX_S", 2, minimum=0)

# Traffic permissions (fleet.control.traffic, docs/control-traffic.md): no request waits longer
# than TRAFFIC_MAX_WAIT_S or sees more than TRAFFIC_MAX_OVERTAKES grants to others (then the
# section is held for it); a grant not used within TRAFFIC_GRANT_UNUSED_S is revoked; a request
# not renewed within TRAFFIC_REQUEST_STALE_S is dropped; one-lane sections closer than
# TRAFFIC_ADJACENT_M are adjacent (rings of them never fill); a truck carrying at least
# TRAFFIC_LOADED_MIN_T tonnes is loaded (it goes before empty ones at the same point).
TRAFFIC_MAX_WAIT_S = env_int("TRAFFIC_MAX_WAIT_S", 120, minimum=1)
TRAFFIC_MAX_OVERTAKES = env_int("TRAFFIC_MAX_OVERTAKES", 3, minimum=0)
TRAFFIC_GRANT_UNUSED_S = env_int("TRAFFIC_GRANT_UNUSED_S", 60, minimum=5)
TRAFFIC_REQUEST_STALE_S = env_int("TRAFFIC_REQUEST_STALE_S", 75, minimum=5)
TRAFFIC_ADJACENT_M = env_int("TRAFFIC_ADJACENT_M", 15, minimum=0)
TRAFFIC_LOADED_MIN_T = env_int("TRAFFIC_LOADED_MIN_T", 5, minimum=0)
# Each ingest replica hands live positions to the sites' sockets at most this often (coalesced per
# truck), in ms; each socket then sends at most LIVE_MAX_FRAMES_PER_S frames a second.
LIVE_POSITION_INTERVAL_MS = env_int("LIVE_POSITION_INTERVAL_MS", 100, minimum=20)
# Each dashboard's socket gathers what happened between frames and sends at most this many
# websocket frames a second, each with only what changed (fleet/live/frames.py).
LIVE_MAX_FRAMES_PER_S = env_int("LIVE_MAX_FRAMES_PER_S", 10, minimum=1, maximum=60)

# --- Celery: RabbitMQ (late acks redeliver a dead worker's tasks at once) --------------------------
# The same broker as the inference pool's processes (inference.config): the environment's, else
# the one scripts/services.sh chose or started (var/services.env), else RabbitMQ on loopback.
CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL",
    inference_config.broker_url(),
    schemes=("amqp", "amqps", "pyamqp", "redis", "rediss"),
    what="a RabbitMQ (amqp://) or Redis (redis://) URL",
)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND") or REDIS_URL
# Fleet's tasks' queue. Another name keeps a second deployment (or the test suite) on the same
# RabbitMQ from taking, or leaving behind, this one's tasks.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# Beat's own bookkeeping (last run of each periodic task) lives under var/, not in the checkout.
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")


def _every(task: str, seconds: float) -> dict:
    """A periodic task that expires when its next run is due: a worker that falls behind (a
    loaded machine, a long task) skips the stale runs instead of working through a backlog of
    them while the predictions' callbacks wait behind it in the same queue (make demo on a
    loaded 2-core VM: 1,455 tasks queued, a collision check every second among them)."""
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


CELERY_BEAT_SCHEDULE = {
    "complete-zone-deletions": _every("control.complete_zone_deletions", 10.0),
    "reconcile-zone-sets": _every("control.reconcile_zone_sets", 15.0),
    "maintain-history": _every("telemetry.maintain_history", 3600.0),
    "roll-up-positions": _every("telemetry.roll_up_positions", 60.0),
    "derive-haul-cycles": _every("telemetry.derive_haul_cycles", 60.0),
    "watch-ingest-replicas": _every("telemetry.watch_ingest_replicas", 30.0),
    "expire-commands": _every("control.expire_commands", 5.0),
    "sweep-traffic": _every("control.sweep_traffic", 2.0),
    "replan-dispatch": _every("control.replan_dispatch", 60.0),
    "purge-predictions": _every("learning.purge_predictions", 3600.0),
    "assess-collision-risk": _every("control.assess_collision_risk", 1.0),
    "sample-pool-utilisation": _every("pool.sample_utilisation", 60.0),
}

# --- The audit trail (fleet.audit) -----------------------------------------------------------------
# Audit rows are kept indefinitely unless set: `manage.py archive_audit` then moves rows older than
# this many days to a file. 0 keeps every row.
AUDIT_ARCHIVE_AFTER_DAYS = env_int("AUDIT_ARCHIVE_AFTER_DAYS", 0, minimum=0)
AUDIT_ARCHIVE_DIR = env_str("AUDIT_ARCHIVE_DIR")  # None: VAR_DIR / "audit-archive"

# --- The mine map ---------------------------------------------------------------------------------
# A zone in Pending Delete becomes Deleted when every truck dropped it, or after this long.
ZONE_DELETE_TIMEOUT_S = env_int("ZONE_DELETE_TIMEOUT_S", 300, minimum=10)
# A connected machine whose reported zones differ from its site's Active zones is re-synchronised,
# at most once per this many seconds (its answers to the last re-sync need a moment to arrive).
ZONE_RESYNC_SETTLE_S = env_int("ZONE_RESYNC_SETTLE_S", 30, minimum=1)

# --- Collision risk (fleet.control.collision_services, docs/control-collision.md) -----------------
# Pairs of machines predicted closer than the safety distance within the horizon are a risk: a
# stop when closing sooner than COLLISION_STOP_TTCA_S or closer than the critical distance, else
# a slow-down for the machine giving way; a standing machine is kept from moving.
COLLISION_SAFETY_DISTANCE_M = env_int("COLLISION_SAFETY_DISTANCE_M", 50, minimum=5, maximum=1000)
COLLISION_CRITICAL_DISTANCE_M = env_int("COLLISION_CRITICAL_DISTANCE_M", 20, minimum=1)
COLLISION_STOP_TTCA_S = env_int("COLLISION_STOP_TTCA_S", 4, minimum=0)
COLLISION_HORIZON_S = env_int("COLLISION_HORIZON_S", 10, minimum=1, maximum=60)
COLLISION_STEP_MS = env_int("COLLISION_STEP_MS", 250, minimum=50, maximum=2000)
# A risk no assessment has seen for this long is closed and its stops resumed.
COLLISION_CLEAR_S = env_int("COLLISION_CLEAR_S", 3, minimum=0)
# A standing machine this rule holds is placed as if released at this speed: its risk clears
# only when releasing it would not bring the risk back.
COLLISION_RELEASE_SPEED_KMH = env_int("COLLISION_RELEASE_SPEED_KMH", 20, minimum=1, maximum=80)
# A machine whose newest position is older than this is not placed (its link is someone else's
# concern: ISO 17757 safe state).
COLLISION_POSITION_MAX_AGE_S = env_int("COLLISION_POSITION_MAX_AGE_S", 5, minimum=1)
# Production states managed by their own rules (loading, tipping, queueing areas): not assessed.
COLLISION_EXEMPT_STATES = env_list(
    "COLLISION_EXEMPT_STATES", ["Loading", "Dumping", "Spotting", "Queued", "Parked", "Off"]
)
# Assessments triggered by arriving predictions run at most this often per site (beat runs 1 Hz).
COLLISION_MIN_INTERVAL_MS = env_int("COLLISION_MIN_INTERVAL_MS", 500, minimum=0)

# --- Auth, roles, REST ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The dashboard's own login (fleet/templates/registration/login.html): the admin's refuses
# everyone who is not staff, and operators and viewers are not.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# The API's conventions (parameters, errors, the schema's error responses): fleet/api/.
REST_FRAMEWORK = {
    # Token first: a request without credentials gets 401 and a WWW-Authenticate header (with
    # the session first, DRF answers 403, as if the caller were known).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["fleet.accounts.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "fleet.api.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # Bodies are JSON (GeoJSON for the map); a form post gets 415. Tests post JSON too.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "EXCEPTION_HANDLER": "fleet.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "fleet.api.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Haulmind API",
    "DESCRIPTION": "Fleet management for autonomous open-pit mines: the mine map, equipment, "
    "telemetry and control. Geometry is GeoJSON in WGS84 (EPSG:4326).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Served from this host, never a CDN: control rooms often have no internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a "status" or a "kind": each choice set gets a name of its own.
    "ENUM_NAME_OVERRIDES": {
        "CommandStatusEnum": "fleet.control.models.Command.Status",
        "EquipmentStatusEnum": "fleet.vehicles.models.Equipment.Status",
        "EquipmentKindEnum": "fleet.vehicles.models.Equipment.Kind",
        "RoadNetworkStatusEnum": "fleet.mine.models.RoadNetwork.Status",
        "PolicyZoneStatusEnum": "fleet.mine.models.PolicyZone.Status",
        "DumpPointKindEnum": "fleet.mine.models.DumpPoint.Kind",
        "AreaKindEnum": "fleet.mine.models.Area.Kind",
        "ModelVersionKindEnum": "fleet.learning.models.ModelVersion.Kind",
    },
}

# --- Static files ---------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
# The operator dashboard, built by Vite from frontend/ (scripts/bootstrap.sh runs `npm run build`)
# into this directory: its index.html is served at / by fleet.dashboard, its assets as static
# files under /static/dashboard/ (collected with the rest in production). Listed only once it
# exists, so a checkout that has not built it yet starts without a warning about a missing
# directory; a server started before the first build serves the assets after a restart.
DASHBOARD_DIR = Path(env_str("HAULMIND_DASHBOARD_DIR") or BASE_DIR / "frontend" / "dist")
STATICFILES_DIRS = [("dashboard", DASHBOARD_DIR)] if DASHBOARD_DIR.is_dir() else []

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Security (production) ------------------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
