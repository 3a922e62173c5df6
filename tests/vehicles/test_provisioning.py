import json
import stat

import pytest
from django.core.management import CommandError, call_command

from fleet.vehicles.credentials import authenticate_api_token
from fleet.vehicles.models import Credential, Equipment
from tests.mqtt import Session


@pytest.fixture
def fleet_of_three(site):
    trucks = [
        Equipment.objects.create(
            site=site, kind="haul_truck", name=f"HT-{n}", payload_capacity_t=90, autonomous=True
        )
        for n in (1, 2)
    ]
    Equipment.objects.create(site=site, kind="light_vehicle", name="LV-1")  # manned: no credentials
    return trucks


def test_it_provisions_every_autonomous_machine_of_a_site_and_the_broker_lets_them_in(
    mqtt_broker, fleet_of_three, tmp_path, capsys
):
    out = tmp_path / "secrets.json"
    call_command("provision_equipment", "--site", "testpit", "--out", str(out))
    secrets = json.loads(out.read_text())
    assert set(secrets) == {str(t.id) for t in fleet_of_three}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    token = secrets[str(fleet_of_three[0].id)]["api_token"]
    assert authenticate_api_token(token) == fleet_of_three[0]
    assert "broker: the broker's logins match" in capsys.readouterr().out
    for truck in fleet_of_three:
        issued = secrets[str(truck.id)]
        session = Session(mqtt_broker.port, issued["mqtt_username"], issued["mqtt_password"])
        assert not session.reason.is_failure
        session.close()


def test_missing_only_leaves_provisioned_machines_alone(fleet_of_three, tmp_path):
    out = tmp_path / "secrets.json"
    call_command("provision_equipment", "--equipment", "HT-1", "--out", str(out))
    first = Credential.objects.get(equipment=fleet_of_three[0], kind="api", revoked_at__isnull=True)
    call_command("provision_equipment", "--site", "testpit", "--missing-only", "--out", str(out))
    assert (
        Credential.objects.get(equipment=fleet_of_three[0], kind="api", revoked_at__isnull=True)
        == first
    )
    assert set(json.loads(out.read_text())) == {str(t.id) for t in fleet_of_three}


def test_it_names_machines_it_cannot_provision(fleet_of_three, tmp_path):
    with pytest.raises(CommandError, match="LV-1, NOPE"):
        call_command(
            "provision_equipment",
            "--equipment",
            "HT-1",
            "LV-1",
            "NOPE",
            "--out",
            str(tmp_path / "x.json"),
        )
