"""WSGI entry point (gunicorn portal.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

# The task modules, imported before the first request rather than by the first thread that enqueues something.
from portal.celery import app  # noqa: E402

app.loader.import_default_modules()
