from django.apps import AppConfig


class VehiclesConfig(AppConfig):
    name = "fleet.vehicles"
    label = "vehicles"
    verbose_name = "Equipment"
