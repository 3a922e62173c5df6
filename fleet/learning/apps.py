from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "fleet.learning"
    label = "learning"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Models"
