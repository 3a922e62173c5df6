"""Alerts from the fault head's results: the inference callback stores a prediction and hands it
to control, whose health policy decides (threshold, run length, severity, action); the alert
carries the model version and the input window behind it; its lifecycle (acknowledge, assign,
resolve) is audited with who, and the roles hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fleet.audit import AuditError
from fleet.control import alerts, health
from fleet.control.models import Alert, AlertEvent, Command, HealthPolicy, TruckState
from fleet.learning import services as registry
from fleet.learning.features import FAULT_CLASSES
from fleet.learning.models import Prediction
from fleet.learning.tasks import store_prediction
from inference.wire import encode_arrays
from tests.factories import haul_truck
from tests.learning.conftest import write_checkpoint

CHANNELS = ["coolant_temp_c", "tyre_pressure_kpa_2.1", "brake_temp_c"]
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


@pytest.fixture
def truck(site):
    return haul_truck(site)


def register_fault_head(root, decision: dict):
    manifest_path = write_checkpoint(root, "fault", 3)
    manifest = json.loads(manifest_path.read_text())
    manifest["channel_names"] = CHANNELS
    manifest["extra"] = {"decision": decision}
    manifest_path.write_text(json.dumps(manifest))
    return registry.register_version(manifest_path)


@pytest.fixture
def fault_head(tmp_path, db):
    """A registered fault head whose manifest names its channels and calibrated rule, as
    training wrote them before there were per-kind thresholds."""
    return register_fault_head(tmp_path, {"threshold": 0.85, "consecutive": 2})


@pytest.fixture
def per_kind_head(tmp_path, db):
    """A fault head calibrated with a threshold per kind for two kinds (chosen on site D)."""
    return register_fault_head(
        tmp_path,
        {"threshold": 0.85, "consecutive": 2, "thresholds": {"tyre_leak": 0.98, "brake_fade": 0.6}},
    )


def response(probabilities: dict[str, float], top_channel: int = 1) -> dict:
    """A slice replica's answer for one window (``inference.worker``'s result format)."""
    probs = np.asarray([[probabilities.get(k, 0.0) for k in FAULT_CLASSES]], np.float32)
    outputs = {
        "probs": probs,
        "top_channel": np.asarray([top_channel], np.int64),
        "anomaly_score": np.asarray([3.2], np.float32),
        "anomalous": np.asarray([1.0], np.float32),
    }
    return {
        "outputs": encode_arrays(outputs),
        "queue_ms": 1.0,
        "compute_ms": 0.5,
        "batch_rows": 1,
        "batch_requests": 1,
        "replica": "cpu-0@node-a",
        "model_id": "fault@3",
        "device": "cpu",
    }


def decide(truck, window_end: datetime, **probabilities: float) -> int:
    """The real callback path: store_prediction as the slice worker's link calls it."""
    meta = {
        "truck": str(truck.id),
        "site": str(truck.site_id),
        "head": "fault",
        "window_start": (window_end - timedelta(seconds=63)).isoformat(),
        "window_end": window_end.isoformat(),
        "origin": [0.0, 0.0, 0.0],
    }
    return store_prediction(response(probabilities), meta)


@pytest.fixture
def workshop(site):
    return HealthPolicy.objects.create(site=site, workshop_way_id=42)


def test_a_fault_prediction_run_raises_an_alert_with_its_model_version_and_window(
    truck, fault_head, workshop, settings
):
    settings.INFERENCE_INTERVAL_S = 10
    decide(truck, T0, tyre_leak=0.97, normal=0.03)
    assert not Alert.objects.exists()  # one confident window is not enough (consecutive 2)

    second = decide(truck, T0 + timedelta(seconds=10), tyre_leak=0.96, normal=0.04)

    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.status) == ("fault:tyre_leak", "warning", "open")
    assert alert.source == "fault@3"
    assert alert.channel == "tyre_pressure_kpa_2.1"
    assert alert.inputs["model_id"] == "fault@3"
    assert alert.inputs["prediction_id"] == second
    assert alert.inputs["window_start"] == (T0 + timedelta(seconds=10 - 63)).isoformat()
    assert alert.inputs["window_end"] == (T0 + timedelta(seconds=10)).isoformat()
    assert alert.inputs["threshold"] == 0.85  # the version's calibrated rule
    assert "fault@3" in alert.reason and "tyre leak" in alert.reason
    # The callback decided nothing itself: the prediction is stored as the model said it.
    assert "alarms" not in Prediction.objects.get(pk=second).outputs
    # The default action for a tyre leak: to the workshop, through the outbox.
    (command,) = Command.objects.filter(equipment=truck)
    assert command.message_name == "HaulTruckAssignmentRequestV2"
    assert command.body[0]["Task"] == "Park" and command.body[0]["DestinationId"] == 42
    assert alert.command_ids == [command.command_id]
    assert TruckState.objects.get(pk=truck.pk).assignment == command.body
    assert list(alert.events.values_list("action", "actor")) == [
        ("opened", "fault@3"),
        ("command", "fault@3"),
    ]


def test_repeats_fold_into_the_open_alert_and_act_once(truck, fault_head, workshop, settings):
    settings.INFERENCE_INTERVAL_S = 10
    for step in range(4):
        decide(truck, T0 + timedelta(seconds=10 * step), brake_fade=0.99)

    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.count) == ("fault:brake_fade", "critical", 3)
    (stop,) = Command.objects.filter(equipment=truck)
    assert stop.message_name == "MachineAllStopRequestV1" and stop.body["ModeAllStop"] == "Apply"


def test_a_gap_in_the_decisions_starts_the_run_again(truck, fault_head, settings):
    settings.INFERENCE_INTERVAL_S = 10
    decide(truck, T0, overheating=0.99)
    decide(truck, T0 + timedelta(seconds=60), overheating=0.99)  # a link outage in between
    assert not Alert.objects.exists()
    decide(truck, T0 + timedelta(seconds=70), overheating=0.99)
    assert Alert.objects.get().kind == "fault:overheating"


def test_the_sites_policy_overrides_threshold_run_and_action(truck, fault_head, settings):
    settings.INFERENCE_INTERVAL_S = 10
    HealthPolicy.objects.create(
        site=truck.site,
        thresholds={"stuck_sensor": 0.5},
        consecutive=1,
        severities={"stuck_sensor": "critical"},
        actions={"stuck_sensor": "stop"},
    )
    decide(truck, T0, stuck_sensor=0.6)

    alert = Alert.objects.get()
    assert (alert.kind, alert.severity) == ("fault:stuck_sensor", "critical")
    assert Command.objects.get(equipment=truck).message_name == "MachineAllStopRequestV1"


def test_the_versions_threshold_per_kind_comes_before_its_one_threshold(
    truck, per_kind_head, workshop, settings
):
    settings.INFERENCE_INTERVAL_S = 10
    for step in range(2):
        decide(
            truck,
            T0 + timedelta(seconds=10 * step),
            tyre_leak=0.97,  # under its own 0.98, though above the one 0.85
            brake_fade=0.7,  # above its own 0.6, though under the one 0.85
            overheating=0.9,  # no threshold of its own: the one 0.85
        )

    thresholds = {a.kind: a.inputs["threshold"] for a in Alert.objects.all()}
    assert thresholds == {"fault:brake_fade": 0.6, "fault:overheating": 0.85}
    assert "above 0.60" in Alert.objects.get(kind="fault:brake_fade").reason


def test_the_sites_threshold_for_a_class_wins_over_the_versions_per_kind_one(
    truck, per_kind_head, settings
):
    settings.INFERENCE_INTERVAL_S = 10
    HealthPolicy.objects.create(site=truck.site, thresholds={"tyre_leak": 0.9, "brake_fade": 0.8})
    for step in range(2):
        decide(truck, T0 + timedelta(seconds=10 * step), tyre_leak=0.95, brake_fade=0.7)

    alert = Alert.objects.get()
    assert (alert.kind, alert.inputs["threshold"]) == ("fault:tyre_leak", 0.9)


def test_rule_for_takes_the_policy_then_the_versions_kind_then_its_one_threshold():
    model_rule = {"threshold": 0.85, "consecutive": 3, "thresholds": {"brake_fade": 0.6}}
    policy = HealthPolicy(thresholds={"tyre_leak": 0.5})
    assert health.rule_for(policy, "brake_fade", model_rule).threshold == 0.6
    assert health.rule_for(policy, "overheating", model_rule).threshold == 0.85
    assert health.rule_for(policy, "tyre_leak", model_rule).threshold == 0.5
    assert health.rule_for(policy, "brake_fade", model_rule).consecutive == 3
    # A rule from before per-kind thresholds, and none at all.
    assert health.rule_for(HealthPolicy(), "brake_fade", {"threshold": 0.8}).threshold == 0.8
    assert health.rule_for(HealthPolicy(), "brake_fade", None).threshold == health.DEFAULT_THRESHOLD


def test_a_workshop_action_without_a_workshop_stops_and_says_why(truck, fault_head, settings):
    settings.INFERENCE_INTERVAL_S = 10
    decide(truck, T0, overheating=0.99)
    decide(truck, T0 + timedelta(seconds=10), overheating=0.99)

    assert Command.objects.get(equipment=truck).message_name == "MachineAllStopRequestV1"
    assert "no workshop WayId" in Alert.objects.get().events.get(action="command").detail


# --- the lifecycle through the API ---------------------------------------------------------------


def an_alert(truck) -> Alert:
    alert, opened = alerts.raise_alert(
        truck,
        alerts.Finding(
            kind="fault:tyre_leak", severity="warning", source="fault@3", reason="tyre leak"
        ),
    )
    assert opened
    return alert


def test_operators_acknowledge_assign_and_resolve_and_each_step_is_audited(
    api_client, truck, operator, supervisor, viewer
):
    alert = an_alert(truck)
    base = f"/api/v1/alerts/{alert.pk}"

    api_client.force_authenticate(viewer)
    listed = api_client.get("/api/v1/alerts/", {"status": "open", "site": str(truck.site_id)})
    assert listed.status_code == 200 and [a["id"] for a in listed.json()["results"]] == [alert.pk]
    assert api_client.post(f"{base}/acknowledge/", {}).status_code == 403

    api_client.force_authenticate(operator)
    assert api_client.post(f"{base}/acknowledge/", {"note": "seen"}).status_code == 200
    assert api_client.post(f"{base}/acknowledge/", {}).status_code == 409  # not open any more
    bad = api_client.post(f"{base}/assign/", {"assignee": "nobody-here"})
    assert bad.status_code == 400 and "assignee" in bad.json()
    assigned = api_client.post(f"{base}/assign/", {"assignee": supervisor.username})
    assert assigned.status_code == 200 and assigned.json()["assigned_to"] == supervisor.username
    resolved = api_client.post(f"{base}/resolve/", {"note": "tyre changed"})
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"

    trail = [(e["action"], e["actor"]) for e in resolved.json()["events"]]
    assert trail == [
        ("opened", "fault@3"),
        ("acknowledged", operator.username),
        ("assigned", operator.username),
        ("resolved", operator.username),
    ]
    # A resolved alert stays closed: the next occurrence is a new alert.
    assert an_alert(truck).pk != alert.pk


def test_an_operators_verdict_on_resolving_is_kept_and_audited(api_client, truck, operator):
    alert = an_alert(truck)
    base = f"/api/v1/alerts/{alert.pk}"
    api_client.force_authenticate(operator)
    bad = api_client.post(f"{base}/resolve/", {"verdict": "maybe"})
    assert bad.status_code == 400 and "verdict" in bad.json()
    seen = api_client.post(f"{base}/acknowledge/", {"verdict": "false_alarm"})
    assert seen.status_code == 200 and seen.json()["verdict"] == "false_alarm"
    # The workshop found the leak after all: the resolving verdict replaces the first one.
    done = api_client.post(f"{base}/resolve/", {"verdict": "confirmed", "note": "tyre changed"})
    assert done.status_code == 200
    body = done.json()
    assert body["verdict"] == "confirmed" and body["verdict_at"]
    assert [e["detail"] for e in body["events"]][1:] == [
        "verdict: false alarm",
        "verdict: confirmed fault; tyre changed",
    ]
    # Without a verdict, a resolution leaves none.
    other = an_alert(truck)
    assert alerts.resolve_alert(other, actor=operator).verdict == ""


def test_the_alert_trail_cannot_be_changed(truck):
    alert = an_alert(truck)
    event = alert.events.get()
    with pytest.raises(AuditError):
        AlertEvent.objects.filter(pk=event.pk).update(detail="nothing happened")
    with pytest.raises(AuditError):
        event.delete()


def test_the_alert_list_refuses_a_bad_filter_by_name(api_client, viewer):
    api_client.force_authenticate(viewer)
    answer = api_client.get("/api/v1/alerts/", {"severity": "apocalyptic"})
    assert answer.status_code == 400 and "severity" in answer.json()


def test_viewers_read_the_health_policy_and_only_supervisors_change_it(
    api_client, site, viewer, operator, supervisor
):
    url = f"/api/v1/sites/{site.id}/health-policy/"
    api_client.force_authenticate(viewer)
    read = api_client.get(url)
    assert read.status_code == 200
    assert read.json()["effective"]["brake_fade"] == {
        "threshold": None,
        "severity": "critical",
        "action": "stop",
    }
    assert api_client.patch(url, {"consecutive": 3}).status_code == 403

    api_client.force_authenticate(operator)
    assert api_client.patch(url, {"consecutive": 3}).status_code == 403

    api_client.force_authenticate(supervisor)
    bad = api_client.patch(url, {"thresholds": {"tyre_leak": 1.5}})
    assert bad.status_code == 400 and "thresholds.tyre_leak" in bad.json()
    bad = api_client.patch(url, {"actions": {"tyre_leak": "speed_limit"}})
    assert bad.status_code == 400 and "actions.tyre_leak" in bad.json()
    changed = api_client.patch(
        url, {"thresholds": {"tyre_leak": 0.7}, "actions": {"tyre_leak": "stop"}}
    )
    assert changed.status_code == 200, changed.content
    assert changed.json()["effective"]["tyre_leak"] == {
        "threshold": 0.7,
        "severity": "warning",
        "action": "stop",
    }
    assert changed.json()["updated_by"] == supervisor.username
    assert health.policy_of(site.id).thresholds == {"tyre_leak": 0.7}


def test_the_admin_lists_alerts_with_filters_and_changes_none(client, admin_user, truck):
    alert = an_alert(truck)
    admin_user.is_staff = True
    admin_user.save(update_fields=["is_staff"])
    client.force_login(admin_user)

    listing = client.get(
        "/admin/control/alert/", {"status__exact": "open", "severity__exact": "warning"}
    )
    assert listing.status_code == 200 and "tyre leak" in listing.content.decode()
    assert (
        client.get("/admin/control/alert/", {"status__exact": "resolved"})
        .context["cl"]
        .result_count
        == 0
    )
    page = client.get(f"/admin/control/alert/{alert.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (
        client.post(f"/admin/control/alert/{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    )
