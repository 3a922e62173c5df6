"""The Celery app. Workers: ``celery -A fleet worker``; the broker is ``CELERY_BROKER_URL``
(RabbitMQ: the one services.sh chose or started, see inference/config.py)."""

import os

from celery import Celery

from inference.health import install_celery_health

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleet.settings")

app = Celery("haulmind")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# With HAULMIND_HEALTH_FILE set (deploy/), each worker touches it while it consumes: the
# liveness probe of fleet's Celery workers.
install_celery_health(app)
