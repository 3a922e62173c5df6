"""The Celery app. Workers: ``celery -A fleet worker``; the broker is ``CELERY_BROKER_URL``
(RabbitMQ: the one services.sh chose or started, see inference/config.py)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("haulmind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
