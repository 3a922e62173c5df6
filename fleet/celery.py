"""The Celery app. Workers: ``celery -A fleet worker``; the broker is ``CELERY_BROKER_URL``
(RabbitMQ where it runs, else Redis)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("haulmind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
