from django.apps import AppConfig


class PoolConfig(AppConfig):
    name = "fleet.pool"
    label = "pool"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Inference pool"
