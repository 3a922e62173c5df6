"""The running broker's logins, changed through the dynamic-security plugin's control topic.

A change is sent when it commits (``publish_machine_login``, ``withdraw_machine_login``); when
the broker cannot be told then, ``reconcile_logins`` (periodic, and ``manage.py broker_config``)
brings the broker's logins to the credential table's. The rules themselves, and the file the
broker starts from, are ``fleet.vehicles.broker``'s.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from django.conf import settings
from paho.mqtt.enums import CallbackAPIVersion

from fleet.vehicles.broker import (
    ADMIN,
    CONTROL_TOPIC,
    SERVICE_LOGINS,
    MachineLogin,
    live_machine_logins,
    machine_role,
    service_password,
)
from fleet.vehicles.models import Equipment
from fleet.vehicles.mqtt import broker_address

log = logging.getLogger(__name__)

RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"


class BrokerAdminError(Exception):
    """The broker's control topic cannot be reached or did not answer."""


@dataclass
class _Exchange:
    waiting: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BrokerAdmin:
    """A connection as ``haulmind-admin`` that sends dynamic-security commands and waits for
    their answers (matched by correlation data). Use as a context manager."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.address = broker_address()
        self._exchange = _Exchange()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"haulmind-admin-{uuid.uuid4().hex[:12]}",
            protocol=paho.MQTTv5,
        )
        self._client.username_pw_set(ADMIN.username, service_password(ADMIN))
        if self.address.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *args: self._connected.set()
        self._client.on_message = self._on_message

    def __enter__(self) -> BrokerAdmin:
        try:
            self._client.connect(self.address.host, self.address.port, keepalive=30)
        except OSError as exc:
            raise BrokerAdminError(
                f"broker at {self.address.host}:{self.address.port} unreachable ({exc})"
            ) from exc
        self._client.loop_start()
        if not self._connected.wait(self.timeout_s) or self._refused:
            self._close()
            raise BrokerAdminError(
                f"broker at {self.address.host}:{self.address.port} refused the admin login "
                f"({self._refused or 'no answer'})"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
            self._connected.set()
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_message(self, client, userdata, message) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        exchange = self._exchange
        with exchange.lock:
            for response in responses:
                key = response.get("correlationData")
                if key in exchange.waiting:
                    exchange.waiting[key] = response
            if all(value is not None for value in exchange.waiting.values()):
                exchange.done.set()

    def run(self, commands: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; their responses, in order (``error`` on failure)."""
        if not commands:
            return []
        keyed = [{**command, "correlationData": uuid.uuid4().hex} for command in commands]
        exchange = self._exchange
        with exchange.lock:
            exchange.waiting = {command["correlationData"]: None for command in keyed}
            exchange.done.clear()
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": keyed}), qos=1)
        if not exchange.done.wait(self.timeout_s + 0.01 * len(commands)):
            raise BrokerAdminError(f"the broker answered no {commands[0]['command']} in time")
        return [exchange.waiting[command["correlationData"]] or {} for command in keyed]

    def must(self, commands: Sequence[dict[str, Any]], *, tolerate: Iterable[str] = ()) -> None:
        """Run ``commands``; raise on an error not in ``tolerate`` (e.g. 'Client not found')."""
        allowed = set(tolerate)
        for command, response in zip(commands, self.run(commands), strict=True):
            error = response.get("error")
            if error and error not in allowed:
                raise BrokerAdminError(f"{command['command']} failed: {error}")


# --- changes as they commit -----------------------------------------------------------------------


def _create_machine(machine: MachineLogin, password: str | None) -> list[dict[str, Any]]:
    role = machine.role()
    client: dict[str, Any] = {
        "command": "createClient",
        "username": machine.equipment_id,
        "clientid": machine.equipment_id,
        "textname": machine.name,
        "roles": [{"rolename": role["rolename"]}],
    }
    if password is not None:
        client["password"] = password
    return [{"command": "createRole", **role}, client]


def _delete_machine(equipment_id: str) -> list[dict[str, Any]]:
    # Deleting the client closes its session at once (the plugin kicks it).
    return [
        {"command": "deleteClient", "username": equipment_id},
        {"command": "deleteRole", "rolename": machine_role(equipment_id)},
    ]


NOT_FOUND = ("Client not found", "Role not found")


def publish_machine_login(equipment: Equipment, password: str) -> bool:
    """Replace the machine's login with one for ``password`` (its old session is closed).
    False, logged, when the broker cannot be told now: reconciliation or the next start of the
    broker (which loads the credential table) brings it in."""
    machine = MachineLogin(str(equipment.id), equipment.name, equipment.site.slug, "")
    return _apply(
        _delete_machine(machine.equipment_id) + _create_machine(machine, password),
        what=f"the login of {equipment.name}",
    )


def withdraw_machine_login(equipment_id: str, name: str = "") -> bool:
    """Remove the machine's login and close its session; False, logged, when the broker cannot
    be told now (reconciliation retries)."""
    return _apply(_delete_machine(equipment_id), what=f"the login of {name or equipment_id}")


def _apply(commands: list[dict[str, Any]], *, what: str) -> bool:
    if not settings.MQTT_MANAGE_LOGINS:
        return False
    try:
        with BrokerAdmin() as admin:
            admin.must(commands, tolerate=NOT_FOUND)
    except BrokerAdminError as exc:
        log.warning("broker not updated for %s: %s; reconciliation will retry", what, exc)
        return False
    return True


# --- reconciliation ------------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """What ``reconcile_logins`` changed, and what it could not."""

    removed: list[str] = field(default_factory=list)  # logins the table no longer has
    roles_fixed: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # service logins
    bound: list[str] = field(default_factory=list)  # client ids set
    # Machines with a live credential the broker lacks: their password exists only as a hash,
    # which the control topic cannot take; the broker loads it when it next starts.
    missing: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.roles_fixed or self.created or self.bound or self.missing)

    def summary(self) -> str:
        parts = [
            f"{len(self.removed)} login(s) removed",
            f"{len(self.roles_fixed)} role(s) fixed",
            f"{len(self.created)} service login(s) created",
            f"{len(self.bound)} client id(s) bound",
        ]
        if self.missing:
            parts.append(
                f"{len(self.missing)} machine login(s) missing until the broker restarts or "
                f"their credentials are re-issued: {', '.join(self.missing[:10])}"
            )
        return "; ".join(parts)


@dataclass(frozen=True)
class _Login:
    """A login the broker should hold: its role's ACLs and how to create it."""

    username: str
    role: dict[str, Any]
    clientid: str | None
    password: str | None  # known for services only; machines' exist here as hashes


def _wanted() -> dict[str, _Login]:
    wanted = {
        s.username: _Login(
            s.username, {"rolename": s.username, "acls": s.acls()}, None, service_password(s)
        )
        for s in SERVICE_LOGINS
    }
    for m in live_machine_logins():
        wanted[m.equipment_id] = _Login(m.equipment_id, m.role(), m.equipment_id, None)
    return wanted


def reconcile_logins() -> Reconciliation:
    """Bring the running broker's logins to the credential table's. Raises ``BrokerAdminError``
    when the broker cannot be reached."""
    wanted = _wanted()
    report = Reconciliation()
    with BrokerAdmin(timeout_s=15.0) as admin:
        have = {c["username"]: c for c in _listed(admin, "listClients", "clients")}
        have_roles = {
            r["rolename"]: _acl_set(r.get("acls", [])) for r in _listed(admin, "listRoles", "roles")
        }
        commands: list[dict[str, Any]] = []
        for username in have.keys() - wanted.keys():
            commands += _delete_machine(username)
            report.removed.append(username)
        for login in wanted.values():
            rolename = login.role["rolename"]
            if have_roles.get(rolename) != _acl_set(login.role["acls"]):
                if rolename in have_roles:  # deleting a role also takes it from its client
                    commands.append({"command": "deleteRole", "rolename": rolename})
                commands.append({"command": "createRole", **login.role})
                if login.username in have:
                    commands.append(
                        {
                            "command": "addClientRole",
                            "username": login.username,
                            "rolename": rolename,
                        }
                    )
                report.roles_fixed.append(rolename)
            if login.username not in have:
                if login.password is None:
                    report.missing.append(login.username)
                    continue
                commands.append(
                    {
                        "command": "createClient",
                        "username": login.username,
                        "password": login.password,
                        "roles": [{"rolename": rolename}],
                    }
                )
                report.created.append(login.username)
            elif login.clientid and have[login.username].get("clientid") != login.clientid:
                commands.append(
                    {
                        "command": "setClientId",
                        "username": login.username,
                        "clientid": login.clientid,
                    }
                )
                report.bound.append(login.username)
        admin.must(commands, tolerate=NOT_FOUND)
    return report


def confirm_logins() -> str:
    """After changes were sent: reconcile, and say in a line what the broker now holds (for the
    admin and the provisioning command)."""
    if not settings.MQTT_MANAGE_LOGINS:
        return "the broker manages its own logins (MQTT_MANAGE_LOGINS is off)"
    try:
        report = reconcile_logins()
    except BrokerAdminError as exc:
        return f"the broker could not be told ({exc}); it loads the logins when it starts"
    return report.summary() if report.changed else "the broker's logins match"


def _listed(admin: BrokerAdmin, command: str, key: str) -> list[dict[str, Any]]:
    (response,) = admin.run([{"command": command, "verbose": True}])
    if response.get("error"):
        raise BrokerAdminError(f"{command} failed: {response['error']}")
    return response.get("data", {}).get(key, [])


def _acl_set(acls: Iterable[dict[str, Any]]) -> set[tuple[str, str, bool]]:
    return {(a["acltype"], a["topic"], bool(a.get("allow", False))) for a in acls}
