"""The model registry over REST: everyone in the control room reads it; supervisors move the
champion and the challenger, with their name in the audit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from django.conf import settings

from fleet.learning import services
from fleet.learning.models import AliasChange, ModelAlias, ModelVersion
from models import PatchBackbone, save_backbone
from tests.models.conftest import TINY

pytestmark = pytest.mark.django_db

VERSIONS = "/api/v1/models/versions/"
ALIASES = "/api/v1/models/aliases/"
CHANGES = "/api/v1/models/changes/"


def promote_url(version: ModelVersion) -> str:
    return f"{VERSIONS}{version.pk}/promote/"


def roll_back_url(name: str) -> str:
    return f"/api/v1/models/{name}/roll-back/"


@pytest.fixture
def saved_backbones(tmp_path) -> list[ModelVersion]:
    """Two versions of a real (tiny, untrained) backbone, saved by models.checkpoint."""
    torch.manual_seed(0)
    root = tmp_path / "checkpoints"
    for version in ("1", "2"):
        save_backbone(PatchBackbone(TINY), root, name="l0-backbone", version=version)
    return [services.register_version(root / "l0-backbone" / v) for v in ("1", "2")]


def test_a_viewer_lists_the_versions_newest_first_and_filters_them(api_client, viewer, heads):
    api_client.force_authenticate(viewer)
    body = api_client.get(VERSIONS).json()
    assert body["count"] == 4
    assert [v["label"] for v in body["results"]] == [
        "fault-head@3",
        "fault-head@2",
        "fault-head@1",
        "backbone@1",
    ]
    heads_only = api_client.get(VERSIONS, {"name": "fault-head", "kind": "head"}).json()
    assert [v["version"] for v in heads_only["results"]] == [3, 2, 1]
    assert api_client.get(VERSIONS, {"kind": "backbone"}).json()["count"] == 1
    page = api_client.get(VERSIONS, {"limit": 2}).json()
    assert len(page["results"]) == 2 and page["next"]


def test_a_version_reads_with_its_lineage_and_the_aliases_pointing_at_it(
    api_client, viewer, supervisor, backbone, heads
):
    services.promote("fault-head", 2, by=supervisor)
    services.promote("fault-head", 2, alias="challenger", by=supervisor)
    api_client.force_authenticate(viewer)
    body = api_client.get(f"{VERSIONS}{heads[1].pk}/").json()
    assert body["name"] == "fault-head" and body["version"] == 2
    assert (body["kind"], body["level"], body["parent_id"]) == ("head", "L2", backbone.pk)
    assert body["lineage"] == ["backbone@1"] and body["sha256"] == heads[1].sha256
    assert body["config"] == {"d_model": 64} and body["metrics"] == {"f1": 0.9}
    assert body["data_hash"] == "ab" * 32 and body["created_at"].startswith("2026-11-22T10:00")
    assert sorted(body["aliases"]) == ["challenger", "champion"]
    assert "path" not in body  # the server's file system is not the API's business
    assert api_client.get(f"{VERSIONS}{heads[0].pk}/").json()["aliases"] == []


def test_a_supervisor_promotes_and_rolls_back_and_the_audit_names_them(
    api_client, supervisor, heads
):
    api_client.force_authenticate(supervisor)
    for head in heads[:2]:
        response = api_client.post(promote_url(head), {"alias": "champion"}, format="json")
        assert response.status_code == 200, response.content
    assert response.json()["label"] == "fault-head@2"
    assert response.json()["by"] == "sofia-supervisor"
    assert services.resolve("fault-head").version == 2

    response = api_client.post(roll_back_url("fault-head"), {"alias": "champion"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == 1 and response.json()["version_id"] == heads[0].pk
    assert services.resolve("fault-head").version == 1

    audit = api_client.get(CHANGES).json()["results"]
    assert [(c["action"], c["from_version"], c["to_version"], c["by"]) for c in audit] == [
        ("roll_back", 2, 1, "sofia-supervisor"),
        ("promote", 1, 2, "sofia-supervisor"),
        ("promote", None, 1, "sofia-supervisor"),
    ]
    assert set(AliasChange.objects.values_list("by", flat=True)) == {supervisor.pk}


def test_the_aliases_list_names_every_alias_with_its_version_and_who_set_it(
    api_client, viewer, supervisor, heads
):
    services.promote("fault-head", 3, by=supervisor)
    services.promote("fault-head", 1, alias="challenger")
    api_client.force_authenticate(viewer)
    aliases = api_client.get(ALIASES).json()["results"]
    assert [(a["name"], a["alias"], a["version"], a["label"], a["by"]) for a in aliases] == [
        ("fault-head", "challenger", 1, "fault-head@1", None),
        ("fault-head", "champion", 3, "fault-head@3", "sofia-supervisor"),
    ]
    assert aliases[1]["version_id"] == heads[2].pk and aliases[1]["since"]


def test_an_operator_reads_the_registry_but_cannot_promote_or_roll_back(
    api_client, operator, heads
):
    services.promote("fault-head", 1)
    services.promote("fault-head", 2)
    api_client.force_authenticate(operator)
    for url in (VERSIONS, ALIASES, CHANGES):
        assert api_client.get(url).status_code == 200
    response = api_client.post(promote_url(heads[2]), {"alias": "champion"}, format="json")
    assert response.status_code == 403
    response = api_client.post(roll_back_url("fault-head"), {"alias": "champion"}, format="json")
    assert response.status_code == 403
    assert services.resolve("fault-head").version == 2
    assert AliasChange.objects.count() == 2


def test_an_anonymous_user_neither_reads_nor_promotes(api_client, heads):
    for url in (VERSIONS, f"{VERSIONS}{heads[0].pk}/", ALIASES, CHANGES):
        assert api_client.get(url).status_code in (401, 403)
    response = api_client.post(promote_url(heads[0]), {"alias": "champion"}, format="json")
    assert response.status_code in (401, 403)
    response = api_client.post(roll_back_url("fault-head"), {"alias": "champion"}, format="json")
    assert response.status_code in (401, 403)
    assert not ModelAlias.objects.exists()


def test_an_outsider_without_a_role_cannot_read_the_registry(api_client, outsider, heads):
    api_client.force_authenticate(outsider)
    for url in (VERSIONS, ALIASES, CHANGES):
        assert api_client.get(url).status_code == 403


def test_a_version_corrupted_after_registration_cannot_be_promoted(
    api_client, supervisor, saved_backbones
):
    first, second = saved_backbones
    api_client.force_authenticate(supervisor)
    response = api_client.post(promote_url(first), {"alias": "champion"}, format="json")
    assert response.status_code == 200
    weights = Path(settings.ARTIFACT_ROOT) / second.path / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64] + b"\0" * 64)  # bit rot in the tensors

    response = api_client.post(promote_url(second), {"alias": "champion"}, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "sha256 mismatch" in detail and "corrupt or was altered" in detail
    assert services.resolve("l0-backbone").version == 1
    assert AliasChange.objects.count() == 1


def test_rolling_back_with_nothing_earlier_is_a_conflict(api_client, supervisor, heads):
    api_client.force_authenticate(supervisor)
    response = api_client.post(roll_back_url("fault-head"), {"alias": "champion"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"detail": "fault-head has no champion to roll back"}
    api_client.post(promote_url(heads[0]), {"alias": "champion"}, format="json")
    response = api_client.post(roll_back_url("fault-head"), {"alias": "champion"}, format="json")
    assert response.status_code == 409
    assert "no earlier champion" in response.json()["detail"]


def test_unknown_versions_names_and_aliases_are_refused(api_client, supervisor, heads):
    api_client.force_authenticate(supervisor)
    missing = ModelVersion.objects.order_by("-pk").first().pk + 1
    assert api_client.get(f"{VERSIONS}{missing}/").status_code == 404
    response = api_client.post(f"{VERSIONS}{missing}/promote/", {"alias": "champion"})
    assert response.status_code == 404
    response = api_client.post(roll_back_url("no-such-head"), {"alias": "champion"})
    assert response.status_code == 404
    response = api_client.post(promote_url(heads[0]), {"alias": "production"}, format="json")
    assert response.status_code == 400 and "alias" in response.json()
    assert api_client.post(promote_url(heads[0]), {}, format="json").status_code == 400
    assert not ModelAlias.objects.exists()
