"""The broker's logins (who may connect, with which client id, to which topics) and the project's
Mosquitto configuration.

The project's Mosquitto authenticates with its dynamic-security plugin, not a password file:
only that plugin *refuses* a CONNECT whose client id is not the one bound to its login
(``use_username_as_clientid`` silently renames instead, and a password file binds nothing, so
any login could take over another's session). So:

- a machine's login is its EquipmentId, bound to the client id EquipmentId, with a role of its
  own that reaches only its topics;
- each FMS service has a login of its own (``haulmind-ingest``, ``haulmind-outbox``, and
  ``haulmind-admin``, which manages the logins through the plugin's control topic); no machine
  can use any other client id, so none can take over a service's session (or another truck's).

The credential table is the truth. The plugin's JSON file is generated from it whenever the
broker starts (the table keeps Mosquitto's own PBKDF2-SHA512 hashes, which the file takes as
they are). While the broker runs, changes go through the control topic the moment they commit:
a new credential creates the login with its new password (the one moment the plaintext exists),
a revoked or retired machine's login is deleted, which closes its session at once. A periodic
reconciliation repairs whatever a missed message left behind (``fleet.vehicles.logins``).
"""

from __future__ import annotations

import getpass
import glob
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from fleet.protocol import topics
from fleet.vehicles.models import Credential, Equipment
from fleet.vehicles.passwords import mosquitto_hash

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
MACHINE_ROLE_PREFIX = "machine-"
PLUGIN_NAME = "mosquitto_dynamic_security.so"


# --- the logins ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceLogin:
    """One FMS service's broker login and what its role may do (topic filters under the root)."""

    name: str  # ingest, outbox, admin
    purpose: str

    @property
    def username(self) -> str:
        return f"haulmind-{self.name}"

    def acls(self) -> list[dict[str, Any]]:
        root = settings.MQTT_TOPIC_ROOT
        if self.name == "ingest":
            # Replicas share the trucks' messages ($share); a plain subscription reads the
            # retained connection states. Either way only up- and connection topics arrive.
            return [
                _acl("subscribePattern", f"$share/+/{root}/#"),
                _acl("subscribePattern", f"{root}/#"),
                _acl("publishClientReceive", f"{root}/+/+/up/#"),
                _acl("publishClientReceive", f"{root}/+/+/connection"),
            ]
        if self.name == "outbox":
            return [_acl("publishClientSend", f"{root}/+/+/down/#")]
        return [
            _acl("publishClientSend", f"{CONTROL_TOPIC}/#"),
            _acl("subscribePattern", f"{CONTROL_TOPIC}/#"),
            _acl("publishClientReceive", f"{CONTROL_TOPIC}/#"),
        ]


INGEST = ServiceLogin("ingest", "ingest replicas: the shared subscription to trucks' messages")
OUTBOX = ServiceLogin("outbox", "the outbox's delivery: commands down to trucks")
ADMIN = ServiceLogin("admin", "manages the broker's logins (dynamic-security control topic)")
SERVICE_LOGINS = (INGEST, OUTBOX, ADMIN)


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def machine_role(equipment_id: str) -> str:
    return f"{MACHINE_ROLE_PREFIX}{equipment_id}"


def machine_acls(site_slug: str, equipment_id: str) -> list[dict[str, Any]]:
    """A machine publishes on its up-topics and its connection state, and receives its own
    down-topics and its site's fleet-wide ones (all-stop)."""
    up = topics.up_filter(site_slug, equipment_id)
    down = topics.down_filter(site_slug, equipment_id)
    fleet_down = topics.fleet_down_filter(site_slug)
    state = topics.connection_topic(site_slug, equipment_id)
    return [
        _acl("publishClientSend", up),
        _acl("publishClientSend", state),
        _acl("subscribePattern", down),
        _acl("subscribePattern", fleet_down),
        _acl("publishClientReceive", down),
        _acl("publishClientReceive", fleet_down),
    ]


@dataclass(frozen=True)
class MachineLogin:
    equipment_id: str
    name: str
    site_slug: str
    secret_hash: str  # Mosquitto's $7$ PBKDF2-SHA512 form

    def role(self) -> dict[str, Any]:
        return {
            "rolename": machine_role(self.equipment_id),
            "acls": machine_acls(self.site_slug, self.equipment_id),
        }


def live_machine_logins() -> list[MachineLogin]:
    """Every machine that may connect: a live MQTT credential on equipment not retired."""
    credentials = (
        Credential.objects.filter(kind=Credential.Kind.MQTT, revoked_at__isnull=True)
        .exclude(equipment__status=Equipment.Status.RETIRED)
        .select_related("equipment__site")
        .order_by("equipment__site__slug", "equipment__name")
    )
    return [
        MachineLogin(str(c.equipment_id), c.equipment.name, c.equipment.site.slug, c.secret_hash)
        for c in credentials
    ]


# --- files: the configuration and the plugin's initial state ------------------------------------


@dataclass(frozen=True)
class BrokerPaths:
    directory: Path

    @property
    def config(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def dynsec(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def pid(self) -> Path:
        return self.directory / "mosquitto.pid"

    def secret(self, login: ServiceLogin) -> Path:
        return self.directory / f"{login.username}.secret"


def embedded_paths() -> BrokerPaths:
    return BrokerPaths(Path(settings.VAR_DIR) / "mosquitto")


def service_password(login: ServiceLogin, paths: BrokerPaths | None = None) -> str:
    """A service's broker password: configured (``MQTT_<NAME>_PASSWORD``), else generated once
    into var/mosquitto for the embedded broker."""
    configured = settings.MQTT_SERVICE_PASSWORDS.get(login.name)
    if configured:
        return configured
    path = (paths or embedded_paths()).secret(login)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, secrets.token_urlsafe(24) + "\n", 0o600)
    return path.read_text().strip()


def embedded_port() -> int:
    return urlsplit(settings.MQTT_URL).port or 1883


def dynsec_plugin() -> str:
    """The plugin shipped with Debian's mosquitto package (any architecture)."""
    found = sorted(glob.glob(f"/usr/lib/*/{PLUGIN_NAME}") + glob.glob(f"/usr/lib/{PLUGIN_NAME}"))
    if not found:
        raise FileNotFoundError(
            f"Mosquitto's dynamic-security plugin ({PLUGIN_NAME}) is not installed; "
            "install Debian's mosquitto package (scripts/bootstrap.sh)"
        )
    return found[0]


def render_config(paths: BrokerPaths, port: int, host: str = "127.0.0.1") -> str:
    data = paths.directory / "data"
    # Started as root, Mosquitto would switch to the 'mosquitto' user, which cannot read var/.
    user = getpass.getuser()
    return f"""# Generated by `manage.py broker_config`; edit fleet/vehicles/broker.py instead.
user {user}
per_listener_settings false
listener {port} {host}
allow_anonymous false
# Logins, client-id bindings and ACLs (fleet/vehicles/broker.py). The plugin refuses a CONNECT
# whose client id is not the one bound to its login.
plugin {dynsec_plugin()}
plugin_opt_config_file {paths.dynsec}
pid_file {paths.pid}
persistence true
persistence_location {data}/
autosave_interval 30
log_dest file {paths.directory / "mosquitto.log"}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
# A QoS 1 subscriber gets past ~700 msg/s only with a wide inflight window on both sides
# (MQTT 5 Receive Maximum on the client, this on the broker).
max_inflight_messages 1000
# Offline persistent sessions (ingest replicas restarting) keep their backlog instead of
# dropping it: bounded by bytes, not by a small message count.
max_queued_messages 1000000
max_queued_bytes 1073741824
# Larger than any ISO 23725 message; bigger packets are refused by the broker itself.
max_packet_size 2097152
persistent_client_expiration 1d
"""


def _hash_fields(secret_hash: str) -> dict[str, Any]:
    """Mosquitto's ``$7$iterations$salt$key`` as the plugin's JSON fields (same PBKDF2)."""
    _, kind, iterations, salt, key = secret_hash.split("$")
    if kind != "7":
        raise ValueError(f"not a Mosquitto PBKDF2-SHA512 hash: ${kind}$")
    return {"password": key, "salt": salt, "iterations": int(iterations)}


def render_dynsec(paths: BrokerPaths) -> dict[str, Any]:
    """The plugin's whole state, from the credential table and the service logins."""
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    for login in SERVICE_LOGINS:
        clients.append(
            {
                "username": login.username,
                "textname": login.purpose,
                **_hash_fields(mosquitto_hash(service_password(login, paths))),
                "roles": [{"rolename": login.username}],
            }
        )
        roles.append({"rolename": login.username, "acls": login.acls()})
    for machine in live_machine_logins():
        role = machine.role()
        clients.append(
            {
                "username": machine.equipment_id,
                "clientid": machine.equipment_id,
                "textname": machine.name,
                **_hash_fields(machine.secret_hash),
                "roles": [{"rolename": role["rolename"]}],
            }
        )
        roles.append(role)
    return {
        # Nothing is allowed unless a role says so.
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)  # atomic: the broker never reads a half-written file


def write_broker_files(
    paths: BrokerPaths | None = None, *, port: int | None = None, host: str = "127.0.0.1"
) -> BrokerPaths:
    """Write the configuration and the plugin's state from the credential table; ``paths`` /
    ``port`` default to the embedded broker (tests run their own instances elsewhere), which
    listens on loopback; ``host`` is the address a broker for other hosts listens on. A running
    broker read its state when it started; ``logins.reconcile_logins`` brings it up to date."""
    paths = paths or embedded_paths()
    (paths.directory / "data").mkdir(parents=True, exist_ok=True)
    _write(paths.config, render_config(paths, port or embedded_port(), host), 0o644)
    _write(paths.dynsec, json.dumps(render_dynsec(paths), indent=1) + "\n", 0o600)
    for obsolete in ("passwd", "acl", "fms.secret"):  # the password-file set-up's, superseded
        (paths.directory / obsolete).unlink(missing_ok=True)
    return paths


def broker_running(paths: BrokerPaths | None = None) -> bool:
    paths = paths or embedded_paths()
    try:
        os.kill(int(paths.pid.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True
