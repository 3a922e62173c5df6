"""The model registry: only verified checkpoints get in, and champions move with an audit."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from fleet.learning import services
from fleet.learning.models import AliasChange, ModelAlias, ModelVersion
from fleet.learning.services import RegistryError
from tests.factories import user_with_password
from tests.learning.conftest import write_checkpoint

pytestmark = pytest.mark.django_db


@pytest.fixture
def ml_engineer(db) -> User:
    """Staff with the registry's permissions (roles.py does not grant them yet)."""
    user = user_with_password("mila-ml")
    user.is_staff = True
    user.save()
    codenames = ("view_modelversion", "promote_modelversion")
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def test_a_checkpoint_registers_with_its_lineage_and_level(tmp_path, backbone, supervisor):
    path = write_checkpoint(tmp_path, "fault-head", 1, lineage=("backbone@1",))
    head = services.register_version(path.parent, by=supervisor)
    assert (head.name, head.version, head.kind, head.level) == ("fault-head", 1, "head", "L2")
    assert head.parent == backbone and backbone.level == "L0"
    assert head.registered_by == supervisor and head.metrics == {"f1": 0.9}
    assert services.register_version(path) == head  # the same weights again: the same row


def test_a_checkpoint_whose_weights_do_not_match_its_sha256_is_refused(tmp_path):
    path = write_checkpoint(tmp_path, "fault-head", 1, sha256="0" * 64)
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        services.register_version(path)
    assert not ModelVersion.objects.exists()


def test_a_tampered_weights_file_is_refused(tmp_path, backbone):
    path = write_checkpoint(tmp_path, "fault-head", 1, lineage=("backbone@1",))
    (path.parent / "weights.safetensors").write_bytes(b"something else")
    with pytest.raises(RegistryError, match="corrupt or was altered"):
        services.register_version(path)


def test_a_head_whose_backbone_is_not_registered_is_refused(tmp_path):
    path = write_checkpoint(tmp_path, "fault-head", 1, lineage=("backbone@7",))
    with pytest.raises(RegistryError, match="backbone@7 is not registered"):
        services.register_version(path)


def test_other_weights_under_a_registered_version_are_refused(tmp_path, heads):
    other = tmp_path / "elsewhere"
    path = write_checkpoint(other, "fault-head", 2, lineage=("backbone@1",), weights=b"new")
    with pytest.raises(RegistryError, match="versions are immutable"):
        services.register_version(path)


def test_promote_then_roll_back_walks_the_champion_back_with_an_audit(heads, supervisor):
    for v in (1, 2, 3):
        services.promote("fault-head", v, by=supervisor)
    assert services.resolve("fault-head").version == 3
    assert services.roll_back("fault-head", by=supervisor).version.version == 2
    assert services.roll_back("fault-head").version.version == 1
    with pytest.raises(RegistryError, match="no earlier champion"):
        services.roll_back("fault-head")
    trail = [
        (c.action, c.from_version and c.from_version.version, c.to_version.version)
        for c in AliasChange.objects.order_by("at", "pk")
    ]
    assert trail == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("promote", 2, 3),
        ("roll_back", 3, 2),
        ("roll_back", 2, 1),
    ]
    assert AliasChange.objects.filter(by=supervisor).count() == 4


def test_champion_and_challenger_are_separate_aliases(heads):
    services.promote("fault-head", 1)
    services.promote("fault-head", 2, alias="challenger")
    aliases = dict(ModelAlias.objects.values_list("alias", "version__version"))
    assert aliases == {"champion": 1, "challenger": 2}
    assert services.promote("fault-head", 1).version.version == 1  # already: nothing changes
    assert AliasChange.objects.count() == 2


def test_a_version_corrupted_after_registration_is_never_promoted(heads):
    services.promote("fault-head", 1)
    weights = Path(settings.ARTIFACT_ROOT) / heads[1].path / "weights.safetensors"
    weights.write_bytes(b"bit rot")
    with pytest.raises(RegistryError, match="sha256 mismatch"):
        services.promote("fault-head", 2)
    assert services.resolve("fault-head").version == 1


def test_unknown_versions_and_aliases_are_refused(heads):
    with pytest.raises(RegistryError, match="not registered"):
        services.promote("fault-head", 9)
    with pytest.raises(RegistryError, match="unknown alias"):
        services.promote("fault-head", 1, alias="production")
    with pytest.raises(RegistryError, match="no champion"):
        services.roll_back("fault-head")


def test_the_admin_promotes_and_rolls_back_with_the_user_recorded(client, ml_engineer, heads):
    client.force_login(ml_engineer)
    url = reverse("admin:learning_modelversion_changelist")
    for version in heads[:2]:
        response = client.post(
            url, {"action": "promote_champion", "_selected_action": [version.pk]}, follow=True
        )
        assert response.status_code == 200
    assert services.resolve("fault-head").version == 2
    client.post(url, {"action": "roll_back_champion", "_selected_action": [heads[1].pk]})
    assert services.resolve("fault-head").version == 1
    assert set(AliasChange.objects.values_list("by", flat=True)) == {ml_engineer.pk}


def test_the_admin_refuses_two_versions_of_one_name_at_once(client, ml_engineer, heads):
    client.force_login(ml_engineer)
    url = reverse("admin:learning_modelversion_changelist")
    pks = [heads[0].pk, heads[1].pk]
    response = client.post(
        url, {"action": "promote_champion", "_selected_action": pks}, follow=True
    )
    assert "select one version" in response.content.decode()
    assert not ModelAlias.objects.exists()


def test_a_viewer_cannot_promote(client, viewer, heads):
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    url = reverse("admin:learning_modelversion_changelist")
    client.post(url, {"action": "promote_champion", "_selected_action": [heads[0].pk]})
    assert not ModelAlias.objects.exists()
