"""The pool deployment a head's challenger runs under in shadow: named here once, read by the
deployments (which put it in the pool), live serving (which sends it the champion's windows)
and the callback (which stores its answers apart). Free of heavy imports: serving loads it."""

from __future__ import annotations

SHADOW_SUFFIX = ".shadow"


def shadow_deployment(head: str) -> str:
    """``fault`` -> ``fault.shadow`` (its queue: ``inference.fault.shadow``)."""
    return f"{head}{SHADOW_SUFFIX}"


def is_shadow(deployment: str) -> bool:
    return deployment.endswith(SHADOW_SUFFIX)
