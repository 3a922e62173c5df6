"""Issuing, checking and revoking machine credentials. Secrets are returned once, never stored.

The broker learns of a change when it commits: a new MQTT password becomes the machine's login
there, a revocation removes the login and closes the machine's session (``fleet.vehicles.logins``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from fleet.vehicles import logins
from fleet.vehicles.models import Credential, Equipment
from fleet.vehicles.passwords import mosquitto_hash

API_TOKEN_PREFIX = "hm"  # noqa: S105 - a public marker, not a secret


@dataclass(frozen=True)
class IssuedCredentials:
    equipment_id: str
    mqtt_username: str
    mqtt_password: str
    api_token: str


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def issue_credentials(equipment: Equipment) -> IssuedCredentials:
    """Revoke the machine's live credentials and issue a new MQTT password and REST token."""
    if not equipment.autonomous:
        raise ValueError(f"{equipment} is not autonomous; only AHS machines get credentials")
    _revoke(equipment)
    mqtt_password = secrets.token_urlsafe(24)
    Credential.objects.create(
        equipment=equipment,
        kind=Credential.Kind.MQTT,
        # The key id must be unique across history, so it cannot be the bare EquipmentId;
        # the broker user name (the EquipmentId) is derived from the equipment instead.
        key_id=f"mqtt-{equipment.id}-{secrets.token_hex(4)}",
        secret_hash=mosquitto_hash(mqtt_password),
    )
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    Credential.objects.create(
        equipment=equipment, kind=Credential.Kind.API, key_id=key_id, secret_hash=_sha256(secret)
    )
    transaction.on_commit(lambda: logins.publish_machine_login(equipment, mqtt_password))
    return IssuedCredentials(
        equipment_id=str(equipment.id),
        mqtt_username=str(equipment.id),
        mqtt_password=mqtt_password,
        api_token=f"{API_TOKEN_PREFIX}_{key_id}_{secret}",
    )


def revoke_credentials(equipment: Equipment) -> int:
    """Revoke the machine's live credentials; once committed, its broker login is removed and
    a connected session closed. The number revoked."""
    revoked = _revoke(equipment)
    if revoked:
        eid, name = str(equipment.id), equipment.name
        transaction.on_commit(lambda: logins.withdraw_machine_login(eid, name))
    return revoked


def _revoke(equipment: Equipment) -> int:
    return Credential.objects.filter(equipment=equipment, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def authenticate_api_token(token: str) -> Equipment | None:
    """The equipment a REST token belongs to, or None for a wrong, revoked or malformed token."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != API_TOKEN_PREFIX:
        return None
    _, key_id, secret = parts
    credential = (
        Credential.objects.select_related("equipment", "equipment__site")
        .filter(kind=Credential.Kind.API, key_id=key_id, revoked_at__isnull=True)
        .first()
    )
    if credential is None or not hmac.compare_digest(credential.secret_hash, _sha256(secret)):
        return None
    if credential.equipment.status == Equipment.Status.RETIRED:
        return None
    return credential.equipment
