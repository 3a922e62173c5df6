from django.apps import AppConfig


class LearningConfig(AppConfig):
    name = "fleet.learning"
    label = "learning"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Models"

    def ready(self) -> None:
        # Live predictions: ingest's batches feed the inference pool (fleet.learning.serving).
        from fleet.learning import serving
        from fleet.telemetry.signals import messages_admitted

        messages_admitted.connect(serving.on_messages_admitted, dispatch_uid="learning.serving")
