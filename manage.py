#!/usr/bin/env python
"""Haulmind's command-line entry point (Django's manage.py)."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line
    from django.db import OperationalError

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        # A deployment mistake gets one line naming the variable, not a traceback.
        sys.exit(f"haulmind: configuration error: {exc}")
    except OperationalError as exc:
        from django.conf import settings

        from fleet.conf import redact_url

        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        sys.exit(
            f"haulmind: DATABASE_URL={redact_url(settings.DATABASE_URL)} does not answer: {reason}"
        )


if __name__ == "__main__":
    main()
