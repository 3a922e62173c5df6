from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "fleet.control"
    label = "control"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Control"

    def ready(self) -> None:
        from fleet.control import receivers  # noqa: F401 - connects the signal receivers
