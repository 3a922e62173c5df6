from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "fleet.live"
    label = "live"
    verbose_name = "Live updates"
