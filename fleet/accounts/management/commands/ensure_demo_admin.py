"""A login for the local demo: user ``admin`` in the admin role, password kept in var/."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from fleet.accounts.roles import ADMIN


class Command(BaseCommand):
    help = "Create (once) the demo's admin user; its password is in var/demo-admin-password."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "ensure_demo_admin is for local demos; use createsuperuser in production"
            )
        password_file = Path(settings.VAR_DIR) / "demo-admin-password"
        user = User.objects.filter(username="admin").first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(9)
            user = user or User(username="admin", email="admin@haulmind.invalid")
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
            user.groups.add(Group.objects.get(name=ADMIN))
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
        self.stdout.write(f"demo login: admin / {password}  (kept in {password_file})")
