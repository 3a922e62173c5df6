from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "fleet.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from fleet.accounts.roles import sync_roles_after_migrate

        # Later migrations add permissions (new ORM models); keep the roles complete.
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="haulmind-sync-roles")
