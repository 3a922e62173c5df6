"""The simulated trucks on MQTT: one broker identity per truck, all in one thread.

Each truck is its own paho MQTT 5 client (username = EquipmentId), driven by one ``selectors``
loop through paho's external-loop API (``socket()``, ``loop_read()``, ``loop_write()``,
``loop_misc()`` and the socket open / close / register-write callbacks): no thread per
client. Every message is built with ``wire.encode`` and every received one read with
``wire.parse_fms_message``. Topic layout as fleet/protocol/topics.py. This module needs no
Django, so a benchmark can drive it directly; fleet/simulator/runner.py sets it up from the
database.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from fleet.learning.features import HEALTH_EXTRAS
from fleet.protocol import wire
from fleet.simulator.engine import STATES, STOPPED, TYRES, Engine, Event

log = logging.getLogger(__name__)

SAFE_STOP_ID = "safe-state:heartbeat-lost"  # the engine's stop id for a self-imposed safe stop

HEADING_ACCURACY_DEG = 1.0
RECONNECT_S = (0.5, 30.0)  # first and longest wait before reconnecting a dropped truck


@dataclass(frozen=True)
class TruckIdentity:
    """A simulated truck's broker identity (username = EquipmentId)."""

    equipment_id: str
    name: str
    password: str
    capacity_t: float = 90.0


@dataclass(frozen=True)
class LinkOptions:
    host: str
    port: int
    site: str  # the site's slug, a topic level
    topic_root: str = "iso23725/v1"
    position_qos: int = 0  # positions may be QoS 0 (protocol.md); everything else is QoS 1
    tls: bool = False
    keepalive_s: int = 30
    validate: bool = True  # parse every encoded message back before sending it
    speedup: float = 1.0  # simulated seconds per wall second
    # ISO 17757 safe state: with a timeout, a truck that has heard the FMS heartbeat stops itself
    # when it hears none for this many (wall) seconds, and resumes when it hears one again.
    heartbeat_timeout_s: float | None = None


@dataclass
class _Truck:
    index: int
    identity: TruckIdentity
    client: mqtt.Client
    up: str  # topic prefix ".../{EquipmentId}/up/"
    down: str  # ".../{EquipmentId}/down/#"
    connection: str
    sequence: Counter = field(default_factory=Counter)  # per-topic HeaderId
    connected: bool = False
    refused: str | None = None
    retry_at: float = 0.0
    retry_wait: float = RECONNECT_S[0]
    published_state: tuple[int, int] | None = None
    published_payload: int | None = None
    completions: list[str] = field(default_factory=list)  # CommandIds done on standstill
    inflight: deque[mqtt.MQTTMessageInfo] = field(default_factory=deque)  # QoS 1 sent


class SimulatedFleet:
    """N simulated trucks on the broker: ``connect()``, ``run(...)`` (or ``step()`` and
    ``pump()`` from your own loop), ``shutdown()``. ``sent`` counts messages by type: the
    load generator's figure for the benchmarks."""

    def __init__(
        self,
        engine: Engine,
        identities: Sequence[TruckIdentity],
        options: LinkOptions,
        *,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        if len(identities) != engine.n:
            raise ValueError(f"{len(identities)} identities for {engine.n} simulated trucks")
        self.engine = engine
        self.options = options
        self.on_event = on_event  # e.g. the fault-label writer
        self.selector = selectors.DefaultSelector()  # reads only; writes: _unwritten
        self._unwritten: set[mqtt.Client] = set()
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()  # received messages that failed to parse
        self.closing = False
        self._fms_heard_at: float | None = None  # monotonic time of the last FMS heartbeat
        # The zones the trucks were last told of, applied to the (shared) engine once a tick:
        # an activation reaches every truck as its own message, and the road table is
        # recomputed once, not once per truck or per disagreeing message in flight.
        self._zones: dict[str, Any] | None = None
        self.safe_stopped = False
        self._now = datetime.now(UTC)
        self._published_states = np.full(engine.n, -1, dtype=np.int64)
        self._snapshot()
        root = f"{options.topic_root}/{options.site}"
        self.fleet_down = f"{root}/fleet/down/#"
        self.trucks = [self._client(i, ident, root) for i, ident in enumerate(identities)]

    # --- connection ----------------------------------------------------------------------------

    def _client(self, index: int, identity: TruckIdentity, root: str) -> _Truck:
        eid = identity.equipment_id
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=eid,  # the broker binds a machine's login to its EquipmentId
            protocol=mqtt.MQTTv5,
            userdata=index,
        )
        client.username_pw_set(eid, identity.password)
        if self.options.tls:
            client.tls_set()
        truck = _Truck(
            index,
            identity,
            client,
            f"{root}/{eid}/up/",
            f"{root}/{eid}/down/#",
            f"{root}/{eid}/connection",
        )
        client.will_set(
            truck.connection, self._connection_state(truck, "ConnectionBroken"), qos=1, retain=True
        )
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._done_writing
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return truck

    def connect(self, timeout_s: float = 15.0) -> None:
        """Connect every truck and wait for the broker to accept them all; raise naming the
        refused ones after ``timeout_s`` (a password file still being reloaded is retried)."""
        for truck in self.trucks:
            try:
                truck.client.connect(self.options.host, self.options.port, self.options.keepalive_s)
            except OSError as error:
                raise ConnectionError(
                    f"cannot reach the MQTT broker at {self.options.host}:{self.options.port}: {error}"
                ) from error
        deadline = time.monotonic() + timeout_s
        while not all(t.connected for t in self.trucks) and time.monotonic() < deadline:
            self.pump(0.05)
            self._reconnect_dropped()
        missing = [t for t in self.trucks if not t.connected]
        if missing:
            names = ", ".join(
                f"{t.identity.name} ({t.refused or 'no answer'})" for t in missing[:5]
            )
            raise ConnectionError(f"the broker did not accept {len(missing)} truck(s): {names}")

    def _connection_state(self, truck: _Truck, state: str) -> bytes:
        return orjson.dumps(
            {
                "EquipmentId": truck.identity.equipment_id,
                "Timestamp": wire.format_timestamp(datetime.now(UTC)),
                "ConnectionState": state,
            }
        )

    def _on_connect(
        self, client: mqtt.Client, index: int, flags: Any, reason: Any, properties: Any
    ) -> None:
        truck = self.trucks[index]
        if reason.is_failure:
            truck.refused = str(reason)
            return
        truck.connected, truck.refused, truck.retry_wait = True, None, RECONNECT_S[0]
        client.subscribe([(truck.down, 1), (self.fleet_down, 1)])
        self._send(truck, truck.connection, self._connection_state(truck, "Online"), 1, retain=True)
        self.sent["connection"] += 1
        self._now = datetime.now(UTC)
        self._snapshot()
        self._publish_state(truck, force=True)
        self._publish_payload(truck, force=True)
        stopped = self.engine.stopped[index]
        self._publish(truck, "MachineAllStopV1", {"ModeAllStop": "On" if stopped else "Off"})

    def _on_disconnect(
        self, client: mqtt.Client, index: int, flags: Any, reason: Any, properties: Any
    ) -> None:
        truck = self.trucks[index]
        truck.connected = False
        if not self.closing:
            truck.retry_at = time.monotonic() + truck.retry_wait
            truck.retry_wait = min(truck.retry_wait * 2, RECONNECT_S[1])
            log.warning(
                "truck %s lost its connection (%s); reconnecting", truck.identity.name, reason
            )

    def _reconnect_dropped(self) -> None:
        now = time.monotonic()
        for truck in self.trucks:
            if (
                not truck.connected
                and truck.retry_at
                and truck.retry_at <= now
                and not self.closing
            ):
                truck.retry_at = 0.0
                try:
                    truck.client.reconnect()
                except OSError as error:
                    truck.retry_at = now + truck.retry_wait
                    truck.refused = str(error)

    # --- the selector loop ---------------------------------------------------------------------------

    def _socket_open(self, client: mqtt.Client, index: Any, sock: Any) -> None:
        self.selector.register(sock, selectors.EVENT_READ, client)

    def _socket_close(self, client: mqtt.Client, index: Any, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(sock)

    def _want_write(self, client: mqtt.Client, index: Any, sock: Any) -> None:
        # No syscall per publish: note the client, and write everything once per pump.
        self._unwritten.add(client)

    def _done_writing(self, client: mqtt.Client, index: Any, sock: Any) -> None:
        self._unwritten.discard(client)

    def pump(self, timeout_s: float = 0.0) -> None:
        """Move bytes: write what is queued, then read what the broker sent (waiting at most
        ``timeout_s`` for it). A socket whose buffer is full stays in the write set and is
        tried again on the next pump."""
        for client in list(self._unwritten):
            client.loop_write()
        if not self.selector.get_map():
            time.sleep(timeout_s)
            return
        for key, _ in self.selector.select(timeout_s):
            key.data.loop_read()

    def housekeeping(self) -> None:
        """Keep-alive pings, reconnections and the heartbeat watch; call about once a second."""
        for truck in self.trucks:
            if truck.connected:
                truck.client.loop_misc()
        self._reconnect_dropped()
        self._watch_heartbeat()

    # --- safe state on link loss (ISO 17757) -----------------------------------------------------

    def _watch_heartbeat(self) -> None:
        timeout = self.options.heartbeat_timeout_s
        if timeout is None or self._fms_heard_at is None or self.safe_stopped:
            return  # armed once the FMS has been heard: a truck waiting for a first FMS drives on
        silent_s = time.monotonic() - self._fms_heard_at
        if silent_s > timeout:
            log.warning("no FMS heartbeat for %.1f s: every truck stops (safe state)", silent_s)
            self._safe_state(stopped=True)

    def _heartbeat(self, truck: _Truck, body: wire.FmsHeartbeatV1, command_id: str | None) -> None:
        # One fleet message reaches every truck's client: the fleet hears it once per truck.
        self._fms_heard_at = time.monotonic()
        if self.safe_stopped:
            log.info("FMS heartbeat back: trucks resume")
            self._safe_state(stopped=False)

    def _safe_state(self, *, stopped: bool) -> None:
        self.safe_stopped = stopped
        state = "Stopped" if stopped else "Resumed"
        for truck in self.trucks:
            self.engine.all_stop(truck.index, SAFE_STOP_ID, stopped)
            if truck.connected:
                self._publish(truck, "SafeStateV1", {"State": state, "Cause": "HeartbeatLost"})
                mode = "On" if self.engine.stopped[truck.index] else "Off"
                self._publish(truck, "MachineAllStopV1", {"ModeAllStop": mode})
                self._publish_state(truck)

    # --- the run ---------------------------------------------------------------------------------

    def run(
        self,
        duration_s: float | None = None,
        *,
        should_stop: Callable[[], bool] | None = None,
        status: Callable[[SimulatedFleet], None] | None = None,
        status_every_s: float = 10.0,
    ) -> None:
        """Step at the engine's rate (times ``speedup``) until ``duration_s`` simulated seconds
        have passed or ``should_stop()`` says so. A tick that cannot be kept up with is
        dropped from the schedule rather than made up in a burst."""
        engine = self.engine
        tick_wall = engine.dt / self.options.speedup
        end_t = engine.t + duration_s if duration_s is not None else float("inf")
        next_tick = next_misc = time.monotonic()
        next_status = next_tick + status_every_s
        while engine.t < end_t - 1e-9 and not (should_stop and should_stop()):
            now = time.monotonic()
            if now >= next_tick:
                self.step()
                next_tick = max(next_tick + tick_wall, now - 1.0)
            if now >= next_misc:
                self.housekeeping()
                next_misc = now + 1.0
            if status and now >= next_status:
                status(self)
                next_status = now + status_every_s
            self.pump(max(0.0, min(next_tick - time.monotonic(), 0.05)))

    def step(self) -> None:
        """One engine tick and everything it makes the trucks say."""
        engine = self.engine
        if self._zones is not None:
            engine.set_zones(list(self._zones.values()))
            self._zones = None
        engine.step()
        self._now = datetime.now(UTC)
        self._snapshot()
        for event in engine.drain_events():
            self._event(event)
        self._publish_positions()
        self._publish_changed_states()
        # Health and payload once a second per truck, spread over the second's ticks.
        due = self.trucks[engine.tick % engine.per_second :: engine.per_second]
        if due:
            health = self._health_snapshot()
            for truck in due:
                if truck.connected:
                    self._publish_health(truck, health)
                    self._publish_payload(truck)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Clean goodbye: "Offline" retained on every connection topic, acknowledged by the
        broker, then a normal DISCONNECT (so the broker does not send the will)."""
        self.closing = True
        for truck in self.trucks:
            if truck.connected:
                self._send(
                    truck,
                    truck.connection,
                    self._connection_state(truck, "Offline"),
                    1,
                    retain=True,
                )
                self.sent["connection"] += 1
        deadline = time.monotonic() + timeout_s
        while self.outstanding() and time.monotonic() < deadline:
            self.pump(0.05)
        for truck in self.trucks:
            if truck.connected:
                truck.client.disconnect()
        while self.selector.get_map() and time.monotonic() < deadline:
            self.pump(0.05)
        for truck in self.trucks:
            truck.connected = False
        self.selector.close()

    def _send(
        self, truck: _Truck, topic: str, payload: bytes, qos: int, *, retain: bool = False
    ) -> None:
        info = truck.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            inflight = truck.inflight
            while inflight and inflight[0].is_published():
                inflight.popleft()
            inflight.append(info)

    # --- publishing ---------------------------------------------------------------------------------

    def _publish(
        self,
        truck: _Truck,
        name: str,
        body: Any,
        *,
        qos: int = 1,
        extra: dict[str, Any] | None = None,
    ) -> None:
        truck.sequence[name] += 1
        payload = wire.encode(
            name,
            body,
            equipment_id=truck.identity.equipment_id,
            timestamp=self._now,
            sequence=truck.sequence[name],
            extra_bodies=extra,
            validate=self.options.validate,
        )
        self._send(truck, truck.up + name, payload, qos)
        self.sent[name] += 1

    def _snapshot(self) -> None:
        """This tick's readings in wire form (rounded, clipped, as Python lists): one
        vectorised pass for the fleet instead of numpy scalar work per message."""
        engine, r = self.engine, self.engine.readings
        self._now_text = wire.format_timestamp(self._now)
        heading = np.round(np.nan_to_num(r["heading_deg"])).astype(np.int64) % 360
        self._wire = {
            "Heading": heading.tolist(),
            "Latitude": np.round(r["latitude"], 7).tolist(),
            "Longitude": np.round(r["longitude"], 7).tolist(),
            "Elevation": np.round(r["elevation_m"], 2).tolist(),
            "Speed": np.round(r["speed_kmh"], 2).tolist(),
            "Accuracy": np.round(engine.gps_sigma, 2).tolist(),
            "ElevationAccuracy": np.round(engine.gps_sigma * 1.5, 2).tolist(),
            "payload": np.clip(np.round(r["payload_t"]), 0, 1000).astype(np.int64).tolist(),
            "gps": engine.gps_ok.tolist(),
        }

    def _health_snapshot(self) -> dict[str, list]:
        r = self.engine.readings
        lists = {
            f"p{t}": _ints(r[f"tyre_pressure_kpa_{t}"], *wire.TIRE_PRESSURE_RANGE) for t in TYRES
        }
        lists |= {
            f"t{t}": _ints(r[f"tyre_temp_c_{t}"], *wire.TIRE_TEMPERATURE_RANGE) for t in TYRES
        }
        lists |= {ch: np.round(r[ch], 1).tolist() for ch, _, _ in HEALTH_EXTRAS}
        lists["fuel"] = np.round(r["fuel_pct"], 1).tolist()
        lists["machine"] = np.round(r["machine_hours_h"], 2).tolist()
        lists["engine"] = np.round(r["engine_hours_h"], 2).tolist()
        return lists

    def _position(self, i: int) -> dict[str, Any]:
        w = self._wire
        return {
            "Heading": w["Heading"][i],
            "Latitude": w["Latitude"][i],
            "Longitude": w["Longitude"][i],
            "Elevation": w["Elevation"][i],
            "LatitudeAccuracy": w["Accuracy"][i],
            "LongitudeAccuracy": w["Accuracy"][i],
            "ElevationAccuracy": w["ElevationAccuracy"][i],
            "HeadingAccuracy": HEADING_ACCURACY_DEG,
            "Speed": w["Speed"][i],
            "Timestamp": self._now_text,
        }

    def _publish_positions(self) -> None:
        ok, qos = self._wire["gps"], self.options.position_qos
        for truck in self.trucks:
            if truck.connected and ok[truck.index]:
                self._publish(truck, wire.POSITION, self._position(truck.index), qos=qos)

    def _publish_health(self, truck: _Truck, h: dict[str, list]) -> None:
        i = truck.index
        tyres = [
            {"TirePosition": t, "TirePressure": h[f"p{t}"][i], "TireTemperature": h[f"t{t}"][i]}
            for t in TYRES
        ]
        extras = [
            {"SensorId": sensor, "Value": h[ch][i], "Unit": unit}
            for ch, sensor, unit in HEALTH_EXTRAS
        ]
        body = {
            "FuelLevel": h["fuel"][i],
            "TotalMachineHour": h["machine"][i],
            "TotalEngineHour": h["engine"][i],
            "Tire": tyres,
            "Additional": extras,
        }
        self._publish(truck, "BasicMachineHealthV2", body)

    def _publish_payload(self, truck: _Truck, force: bool = False) -> None:
        tonnes = self._wire["payload"][truck.index]
        if force or tonnes != truck.published_payload:
            truck.published_payload = tonnes
            self._publish(truck, "HaulTruckPayloadV1", {"PayloadWeight": tonnes, "Accuracy": 1.5})

    def _publish_state(self, truck: _Truck, force: bool = False) -> None:
        engine, i = self.engine, truck.index
        now = (int(engine.state[i]), int(engine.way_id[i]))
        if not force and now == truck.published_state:
            return
        truck.published_state = now
        body = {
            "AssignmentId": engine.assignment_id[i],
            "WayId": now[1] if now[1] >= 0 else None,
            "AutonomyMode": "Autonomous",
            "ProductionState": STATES[now[0]],
        }
        extra = {wire.POSITION: self._position(i)} if self._wire["gps"][i] else None
        self._publish(truck, "HaulTruckProductionStateV2", body, extra=extra)

    def _publish_changed_states(self) -> None:
        engine = self.engine
        now = engine.state.astype(np.int64) * (1 << 32) + engine.way_id
        changed = np.flatnonzero(now != self._published_states)
        self._published_states = now
        for i in changed.tolist():
            if self.trucks[i].connected:
                self._publish_state(self.trucks[i])

    def _event(self, event: Event) -> None:
        truck = self.trucks[event.truck]
        if self.on_event is not None:
            self.on_event(event)
        if not truck.connected:
            return
        if event.kind == "permission_request":
            self._publish(
                truck,
                "TrafficPermissionRequestV1",
                {"ZoneId": event.data["zone_id"], "WayId": event.data["way_id"]},
            )
        elif event.kind == "permission_released":
            self._publish(
                truck,
                "TrafficPermissionReleasedV1",
                {"ZoneId": event.data["zone_id"], "WayId": event.data["way_id"]},
            )
        elif event.kind == "diagnostic":
            self._publish(truck, "MachineDiagnosticV2", event.data["faults"])
        elif event.kind == "standstill":
            for command_id in truck.completions:
                self._ack(truck, command_id, "Completed")
            truck.completions.clear()

    def _ack(self, truck: _Truck, command_id: str, status: str, reason: str | None = None) -> None:
        body = {"CommandId": command_id, "Status": status}
        if reason:
            body["Reason"] = reason[:1000]
        self._publish(truck, "CommandAcknowledgementV1", body)

    # --- receiving ---------------------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, index: int, message: mqtt.MQTTMessage) -> None:
        truck = self.trucks[index]
        try:
            envelope = wire.parse_fms_message(bytes(message.payload))
        except wire.WireError as error:
            self.rejected[error.reason] += 1
            log.warning("truck %s ignored %s: %s", truck.identity.name, message.topic, error)
            return
        addressed = envelope.equipment_id
        if addressed is not None and str(addressed) != truck.identity.equipment_id:
            self.rejected["other_truck"] += 1
            return
        self._now = datetime.now(UTC)
        self._now_text = wire.format_timestamp(self._now)
        command_id = str(envelope.command_id) if envelope.command_id else None
        refusal = None
        for name, body in envelope.bodies.items():
            self.received[name] += 1
            handler = self._handlers.get(name)
            if handler is not None:
                refusal = handler(truck, body, command_id) or refusal
        if command_id is not None:
            self._ack(truck, command_id, "Rejected" if refusal else "Accepted", refusal)

    @property
    def _handlers(self) -> dict[str, Callable[[_Truck, Any, str | None], str | None]]:
        return {
            "MachineAllStopRequestV1": self._all_stop,
            "ActivateZoneRequestV1": self._activate_zone,
            "DeactivateZoneRequestV1": self._deactivate_zone,
            "SyncActiveZonesRequestV1": self._sync_zones,
            "TrafficPermissionUpdateV1": self._permission,
            "HaulTruckAssignmentRequestV2": self._assignment,
            "FmsHeartbeatV1": self._heartbeat,
        }

    def _all_stop(
        self, truck: _Truck, body: wire.MachineAllStopRequestV1, command_id: str | None
    ) -> None:
        """Apply / Remove one stop: fleet-wide (no EquipmentId) or targeted at this truck."""
        apply = body.mode == "Apply"
        stop_id = str(body.all_stop_id)
        self.engine.all_stop(truck.index, stop_id, apply)
        if apply and command_id:
            truck.completions.append(command_id)  # Completed once it stands still
        if not self.engine.stopped[truck.index]:
            truck.completions.clear()  # resumed before it stood still: nothing to complete
        mode = "On" if self.engine.stopped[truck.index] else "Off"
        self._publish(truck, "MachineAllStopV1", {"ModeAllStop": mode, "ModeAllStopId": stop_id})
        self._publish_state(truck)

    def _zone_set(self) -> dict[str, Any]:
        if self._zones is None:
            self._zones = dict(self.engine.zones)
        return self._zones

    def _activate_zone(
        self, truck: _Truck, body: wire.ActivateZoneRequestV1, command_id: str | None
    ) -> None:
        zone = self.engine.world.zone(body.zone.to_wire())
        self._zone_set()[zone.zone_id] = zone
        response = {"ZoneId": body.zone.zone_id, "Status": "Activated"}
        self._publish(truck, "ActivateZoneResponseV1", response)

    def _deactivate_zone(
        self, truck: _Truck, body: wire.DeactivateZoneRequestV1, command_id: str | None
    ) -> None:
        self._zone_set().pop(str(body.zone_id), None)
        response = {"ZoneId": body.zone_id, "Status": "Accepted"}
        self._publish(truck, "DeactivateZoneResponseV1", response)

    def _sync_zones(
        self, truck: _Truck, body: wire.SyncActiveZonesRequestV1, command_id: str | None
    ) -> None:
        zones = [self.engine.world.zone(zone.to_wire()) for zone in body.zones]
        self._zones = {zone.zone_id: zone for zone in zones}
        response = {
            "RequestId": body.request_id,
            "Status": "Activated",
            "Zones": [{"ZoneId": zone.zone_id} for zone in body.zones],
        }
        self._publish(truck, "SyncActiveZonesResponseV1", response)

    def _permission(
        self, truck: _Truck, body: wire.TrafficPermissionUpdateV1, command_id: str | None
    ) -> None:
        self.engine.permission(truck.index, str(body.zone_id), body.status)
        self._publish(truck, "TrafficPermissionAcknowledgementV1", {"EventId": body.event_id})

    def _assignment(
        self, truck: _Truck, body: wire.HaulTruckAssignmentRequestV2, command_id: str | None
    ) -> str | None:
        responses, refusal = [], None
        for request in body.assignments:
            target = self._target(request)
            reason = self.engine.assign(
                truck.index, request.task, target, str(request.assignment_id)
            )
            response = {"AssignmentId": request.assignment_id, "Response": "Accepted"}
            if reason:
                response |= {"Response": "Rejected", "Detail": reason}
                refusal = reason
            responses.append(response)
        self._publish(truck, "HaulTruckAssignmentResponseV1", responses)
        self._publish_state(truck, force=True)
        return refusal

    def _target(self, request: wire.AssignmentRequest) -> int | None:
        """The loading unit (Load) or dump (Offload) an assignment names: by the shovel's
        EquipmentId, else by a destination way that ends at one."""
        world = self.engine.world
        places = world.loading_units if request.task == "Load" else world.dumps
        if request.destination_equipment_id is not None:
            for index, place in enumerate(places):
                if (
                    place.equipment_id
                    and uuid.UUID(place.equipment_id) == request.destination_equipment_id
                ):
                    return index
            return None
        ways = np.flatnonzero(world.way_ids == request.destination_id)
        if not len(ways):
            return None
        ends = {int(world.edge_from[2 * ways[0]]), int(world.edge_to[2 * ways[0]])}
        for index, place in enumerate(places):
            if place.node in ends:
                return index
        return None

    # --- status -------------------------------------------------------------------------------------

    def stopped_trucks(self) -> int:
        return int((self.engine.state == STOPPED).sum())

    def connected_trucks(self) -> int:
        return sum(t.connected for t in self.trucks)

    def outstanding(self) -> int:
        """QoS 1 messages the broker has not acknowledged yet."""
        return sum(not i.is_published() for t in self.trucks if t.connected for i in t.inflight)

    def total_sent(self) -> int:
        return sum(self.sent.values())


def _ints(values: np.ndarray, lo: int, hi: int) -> list[int]:
    return np.clip(np.round(values), lo, hi).astype(np.int64).tolist()
