"""REST permissions that follow the roles: reading needs the model's view permission, writing
its add / change / delete permission."""

from __future__ import annotations

from rest_framework.permissions import DjangoModelPermissions


class RolePermission(DjangoModelPermissions):
    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }
