"""Mosquitto's password hash: PBKDF2-HMAC-SHA512, the form the broker itself checks (``$7$``).

The credential table keeps machines' MQTT passwords only in this form, so the broker's login
state can be generated from it without the secrets (``fleet.vehicles.broker``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# Mosquitto 2's format: $7$ = PBKDF2-HMAC-SHA512, 101 iterations (its default),
# a 12-byte salt, a 64-byte key. We write the same so the broker reads our hashes directly.
MOSQUITTO_ITERATIONS = 101


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(12)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, MOSQUITTO_ITERATIONS, 64)
    return f"$7${MOSQUITTO_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_mosquitto_hash(password: str, hashed: str) -> bool:
    try:
        _, kind, iterations, salt_b64, key_b64 = hashed.split("$")
    except ValueError:
        return False
    if kind != "7":
        return False
    key = hashlib.pbkdf2_hmac(
        "sha512", password.encode(), base64.b64decode(salt_b64), int(iterations), 64
    )
    return hmac.compare_digest(key, base64.b64decode(key_b64))
