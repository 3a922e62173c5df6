from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "fleet.simulator"
    label = "simulator"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Simulator"
