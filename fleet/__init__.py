"""Haulmind: the Django project and the fleet's domain apps."""

from fleet.celery import app as celery_app

__all__ = ("celery_app",)
