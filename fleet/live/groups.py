"""Channels group names: constants, in one place."""

from __future__ import annotations

import uuid


def site_group(site_id: uuid.UUID | str) -> str:
    """Everyone watching one site's live picture."""
    return f"site.{site_id}"
