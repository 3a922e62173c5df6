from django.apps import AppConfig


class MineConfig(AppConfig):
    name = "fleet.mine"
    label = "mine"
    verbose_name = "Mine map"
