"""WSGI entry point used by gunicorn for the user API."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")
application = get_wsgi_application()
