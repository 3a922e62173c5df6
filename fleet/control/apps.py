from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "fleet.control"
    label = "control"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Control"
