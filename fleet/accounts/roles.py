"""Roles are Django groups with permissions: viewer < operator < supervisor < admin.

- viewer: sees the map, the fleet and the live picture; changes nothing.
- operator (control room): also creates policy zones (closing a road is an exclusion zone) and
  activates or deactivates them.
- supervisor: also maintains the mine map and the equipment register, decides which model
  version serves and drains inference nodes.
- admin: everything, including users, roles and machine credentials.

History is kept, for every role: none adds, changes or deletes an audit row (``fleet.audit``),
changes or deletes a command (its status changes only through the control services), or deletes
a machine, a site or a policy zone (they are retired or deactivated). Superusers hold every
permission by definition, so the audit tables refuse them in the ORM model and the admin too.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps as live_apps

VIEWER, OPERATOR, SUPERVISOR, ADMIN = "viewer", "operator", "supervisor", "admin"
ROLES = (VIEWER, OPERATOR, SUPERVISOR, ADMIN)

DOMAIN_APPS = ("mine", "vehicles", "telemetry", "control", "learning", "pool")
# Operators run the shift: draw zones, activate them, stop and resume trucks (a command).
OPERATOR_EXTRA = {
    ("mine", "add_policyzone"),
    ("mine", "activate_policyzone"),
    ("control", "add_command"),
    ("control", "apply_allstop"),  # the emergency-stop rule: anyone on shift can stop the site
    ("control", "dispatch_trucks"),  # reassign a truck by hand, report a loading unit down or back
    ("control", "change_alert"),  # acknowledge, assign and resolve alerts
}
SUPERVISOR_MODELS = {
    "mine": (
        "site",
        "roadnetwork",
        "roadnode",
        "way",
        "policyzone",
        "loadingunit",
        "dumppoint",
        "area",
    ),
    "vehicles": ("equipment", "workshoprecord"),
}
# Supervisors decide which model version serves (promote, roll back), which inference nodes
# take work (drain, undrain), and when a site's all-stop is lifted.
SUPERVISOR_EXTRA = {
    ("learning", "promote_modelversion"),
    ("pool", "drain_node"),
    ("control", "remove_allstop"),  # lifting an all-stop puts the site back in motion
    ("control", "change_sitedispatch"),  # switch the dispatcher on or off for a site
    ("control", "change_healthpolicy"),  # what a fault prediction raises and what follows
    ("control", "decide_trafficpermission"),  # grant or revoke a traffic permission by hand
}
# What history refers to is retired or deactivated, never deleted; a command changes only
# through the services.
HISTORY_KEPT = {
    ("vehicles", "delete_equipment"),
    ("mine", "delete_site"),
    ("mine", "delete_policyzone"),
    ("control", "change_command"),
    ("control", "delete_command"),
}


def never_granted() -> set[tuple[str, str]]:
    """Permissions no role holds: HISTORY_KEPT, and add / change / delete of every audit table
    (and its proxies), read from the running code so a new audit table is covered at once."""
    from fleet.audit import AuditRecord

    audit = {
        (model._meta.app_label, f"{verb}_{model._meta.model_name}")
        for model in live_apps.get_models()
        if issubclass(model, AuditRecord)
        for verb in ("add", "change", "delete")
    }
    return HISTORY_KEPT | audit


def role_permissions(all_codenames: set[tuple[str, str]]) -> dict[str, set[tuple[str, str]]]:
    """(app_label, codename) pairs per role, from the permissions that exist."""
    domain = {p for p in all_codenames if p[0] in DOMAIN_APPS}
    viewer = {p for p in domain if p[1].startswith("view_")}
    operator = viewer | (OPERATOR_EXTRA & all_codenames)
    supervisor = set(operator) | (SUPERVISOR_EXTRA & all_codenames)
    for app, models in SUPERVISOR_MODELS.items():
        for model in models:
            supervisor |= {
                (app, f"{verb}_{model}") for verb in ("add", "change", "delete")
            } & all_codenames
    admin = set(all_codenames)
    never = never_granted()
    return {
        role: keys - never
        for role, keys in {
            VIEWER: viewer,
            OPERATOR: operator,
            SUPERVISOR: supervisor,
            ADMIN: admin,
        }.items()
    }


def sync_roles(apps: Any) -> None:
    """Create the role groups and give each exactly its permissions (idempotent)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    by_key = {
        (p.content_type.app_label, p.codename): p
        for p in Permission.objects.select_related("content_type")
    }
    for role, keys in role_permissions(set(by_key)).items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([by_key[k] for k in keys])


def sync_roles_after_migrate(sender: Any, apps: Any = None, **kwargs: Any) -> None:
    # Each domain app's permissions exist only after its own post_migrate (create_permissions),
    # so re-sync after every app that brings role permissions (idempotent and cheap).
    if (sender.label != "accounts" and sender.label not in DOMAIN_APPS) or apps is None:
        return
    try:
        apps.get_model("auth", "Group")
    except LookupError:
        return
    sync_roles(apps)
