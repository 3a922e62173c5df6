"""The fault head's results as control's inputs: each prediction is handed over by the learning
callback (signal ``fleet.learning.signals.prediction_recorded``); the site's ``HealthPolicy``
decides whether it raises an alert and what follows.

The rule: a fault class whose probability stays above its threshold for ``consecutive``
decisions of the same truck in a row raises (or folds into) an alert; a gap in the decisions
(none for 1.5 inference intervals, e.g. a link outage) starts the run again. Thresholds and the
run length default to what the model version was calibrated with (its manifest's decision rule,
carried in the prediction: a threshold per fault kind where it has one, else its one threshold),
and the policy overrides them per site and class.

Actions, when the alert is opened (a repeat folded into it does not act again):
- ``stop``: a targeted stop (MachineAllStopRequestV1 Apply, ``services.stop_truck``);
- ``workshop``: an assignment (HaulTruckAssignmentRequestV2, Task ``Park``) to the policy's
  workshop WayId, kept as the truck's desired assignment; with no workshop WayId configured, a
  stop instead (the reason says so);
- ``none``: the alert only.
ISO 23725 has no per-truck speed-limit message (speed limits are zone policies, for every
machine in the zone), so a "limit this truck's speed" action cannot be sent; see
docs/control-alerts.md.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction

from fleet.control import alerts, services
from fleet.control.models import Alert, FaultRun, HealthPolicy, TruckState
from fleet.vehicles.models import Equipment

Action = HealthPolicy.Action
Severity = Alert.Severity

# Fault classes of the fault head (fleet.learning.pipeline.datasets.FAULT_CLASSES, "normal" left out):
# control keeps its own list of what it has defaults for; a class the model adds later is
# decided with the generic default.
DEFAULTS: dict[str, tuple[str, str]] = {
    # class: (severity, action)
    "overheating": (Severity.WARNING, Action.WORKSHOP),
    "tyre_leak": (Severity.WARNING, Action.WORKSHOP),
    "brake_fade": (Severity.CRITICAL, Action.STOP),
    "stuck_sensor": (Severity.INFO, Action.NONE),
}
GENERIC_DEFAULT = (Severity.WARNING, Action.NONE)
DEFAULT_THRESHOLD = 0.9  # used only when neither the policy nor the model's rule gives one
DEFAULT_CONSECUTIVE = 2
NOT_FAULTS = frozenset({"normal"})


@dataclass(frozen=True, slots=True)
class FaultPrediction:
    """One fault-head decision as handed to control: which version decided, on which window."""

    prediction_id: int | None
    equipment_id: uuid.UUID
    model_id: str  # "fault@3"
    window_start: datetime
    window_end: datetime
    probabilities: dict[str, float]
    top_channel: str | None = None
    # {"threshold", "consecutive", "thresholds" (per kind)}: the manifest's decision rule
    model_rule: dict[str, Any] | None = None

    @classmethod
    def from_outputs(
        cls,
        *,
        prediction_id: int | None,
        equipment_id: Any,
        model_id: str,
        window_start: datetime,
        window_end: datetime,
        outputs: dict[str, Any],
    ) -> FaultPrediction:
        return cls(
            prediction_id=prediction_id,
            equipment_id=uuid.UUID(str(equipment_id)),
            model_id=model_id,
            window_start=window_start,
            window_end=window_end,
            probabilities={k: float(v) for k, v in (outputs.get("probabilities") or {}).items()},
            top_channel=outputs.get("top_channel"),
            model_rule=outputs.get("rule") or None,
        )


@dataclass(frozen=True, slots=True)
class ClassRule:
    threshold: float
    consecutive: int
    severity: str
    action: str


def rule_for(
    policy: HealthPolicy, fault_class: str, model_rule: dict[str, Any] | None
) -> ClassRule:
    """The policy's rule for one class, with the model's calibrated rule and the defaults under
    it. The threshold: the policy's for the class, else the model's for the class (its
    per-kind ``thresholds``), else the model's one ``threshold``, else the default."""
    model_rule = model_rule or {}
    severity, action = DEFAULTS.get(fault_class, GENERIC_DEFAULT)
    threshold = policy.thresholds.get(fault_class)
    if threshold is None:
        threshold = (model_rule.get("thresholds") or {}).get(fault_class)
    if threshold is None:
        threshold = model_rule.get("threshold", DEFAULT_THRESHOLD)
    consecutive = policy.consecutive or model_rule.get("consecutive") or DEFAULT_CONSECUTIVE
    return ClassRule(
        threshold=float(threshold),
        consecutive=int(consecutive),
        severity=policy.severities.get(fault_class, severity),
        action=policy.actions.get(fault_class, action),
    )


def policy_of(site_id: Any) -> HealthPolicy:
    """The site's policy; an unsaved default one where none was set."""
    return HealthPolicy.objects.filter(site_id=site_id).first() or HealthPolicy(site_id=site_id)


@transaction.atomic
def change_policy(site: Any, *, actor: Any, **fields: Any) -> HealthPolicy:
    """A supervisor's change: the fields given replace theirs."""
    policy, _ = HealthPolicy.objects.select_for_update().get_or_create(site=site)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.updated_by = actor
    policy.save()
    return policy


def effective_policy(policy: HealthPolicy) -> dict[str, dict[str, Any]]:
    """Per fault class, what the policy decides with (the model's own rule left out: it is
    known per prediction), for reading in the API."""
    classes = [*DEFAULTS, *(set(policy.thresholds) | set(policy.actions)) - set(DEFAULTS)]
    out = {}
    for fault_class in classes:
        rule = rule_for(policy, fault_class, None)
        out[fault_class] = {
            "threshold": policy.thresholds.get(fault_class),  # None: the model's calibration
            "severity": rule.severity,
            "action": rule.action,
        }
    return out


def consider_fault_prediction(prediction: FaultPrediction) -> list[Alert]:
    """Decide on one fault-head result: update each class's run, raise (or fold) an alert for
    the classes whose run reached the rule, and act on the newly opened ones. Returns the alerts
    raised or folded."""
    equipment = Equipment.objects.filter(pk=prediction.equipment_id).first()
    if equipment is None:
        return []
    policy = policy_of(equipment.site_id)
    raised = []
    with transaction.atomic():
        for fault_class, probability in sorted(prediction.probabilities.items()):
            if fault_class in NOT_FAULTS:
                continue
            rule = rule_for(policy, fault_class, prediction.model_rule)
            run = _advance_run(equipment, fault_class, probability > rule.threshold, prediction)
            if run < rule.consecutive:
                continue
            alert, opened = alerts.raise_alert(
                equipment, _finding(prediction, fault_class, probability, rule, run)
            )
            raised.append(alert)
            if opened:
                _act(equipment, alert, rule, policy)
    return raised


def _advance_run(
    equipment: Equipment, fault_class: str, positive: bool, prediction: FaultPrediction
) -> int:
    """The run length ending at this decision (0 when it is below the threshold). A decision
    older than the last one counted leaves the run as it is (a late, redelivered callback)."""
    run, _ = FaultRun.objects.select_for_update().get_or_create(
        equipment=equipment,
        fault_class=fault_class,
        defaults={"count": 0, "last_window_end": prediction.window_end},
    )
    if prediction.window_end < run.last_window_end:
        return 0
    gap = timedelta(seconds=1.5 * float(settings.INFERENCE_INTERVAL_S))
    continues = run.count > 0 and prediction.window_end - run.last_window_end <= gap
    if prediction.window_end == run.last_window_end and run.count > 0:
        return run.count if positive else 0  # the same decision again
    run.count = (run.count + 1 if continues else 1) if positive else 0
    run.last_window_end = prediction.window_end
    run.save(update_fields=["count", "last_window_end"])
    return run.count


def _finding(
    prediction: FaultPrediction, fault_class: str, probability: float, rule: ClassRule, run: int
) -> alerts.Finding:
    window = f"{prediction.window_start:%H:%M:%S} to {prediction.window_end:%H:%M:%S} UTC"
    channel = f", mostly {prediction.top_channel}" if prediction.top_channel else ""
    return alerts.Finding(
        kind=f"fault:{fault_class}",
        severity=rule.severity,
        source=prediction.model_id or "fault",
        reason=(
            f"{fault_class.replace('_', ' ')} likely: p={probability:.2f} above "
            f"{rule.threshold:.2f} for {run} decisions in a row (model {prediction.model_id}, "
            f"window {window}{channel})"
        ),
        channel=prediction.top_channel or "",
        inputs={
            "model_id": prediction.model_id,
            "prediction_id": prediction.prediction_id,
            "window_start": prediction.window_start.isoformat(),
            "window_end": prediction.window_end.isoformat(),
            "probability": round(probability, 6),
            "probabilities": prediction.probabilities,
            "threshold": rule.threshold,
            "consecutive": rule.consecutive,
        },
    )


def _act(equipment: Equipment, alert: Alert, rule: ClassRule, policy: HealthPolicy) -> None:
    if rule.action == Action.NONE or not equipment.autonomous:
        return
    reason = f"alert {alert.pk}: {alert.reason}"
    if rule.action == Action.WORKSHOP and policy.workshop_way_id is not None:
        command = send_to_workshop(equipment, policy.workshop_way_id, reason=reason)
        detail = f"sent to the workshop (WayId {policy.workshop_way_id})"
    else:
        command = services.stop_truck(equipment, reason=reason)
        detail = (
            "stopped"
            if rule.action == Action.STOP
            else "stopped: no workshop WayId is configured in the site's health policy"
        )
    alerts.record_action(alert, command.command_id, actor=alert.source, detail=detail)


@transaction.atomic
def send_to_workshop(equipment: Equipment, way_id: int, *, reason: str) -> Any:
    """A Park assignment to the workshop's WayId, kept as the truck's desired assignment (a
    truck that reconnects is sent it again)."""
    body = [{"AssignmentId": str(uuid.uuid4()), "Task": "Park", "DestinationId": int(way_id)}]
    state, _ = TruckState.objects.select_for_update().get_or_create(equipment=equipment)
    state.assignment = body
    state.save(update_fields=["assignment"])
    return services.issue_command(
        equipment,
        "HaulTruckAssignmentRequestV2",
        body,
        reason=reason,
        supersede_key=services.ASSIGNMENT_KEY,
    )
