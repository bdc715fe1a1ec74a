"""Shelfmark's Django project: the registry, the pages, the API and the submission flow."""
from .celery import app as celery_app

__all__ = ("celery_app",)
