"""The WSGI application of the user API (Django); flightctl.asgi serves it with uvicorn."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")
application = get_wsgi_application()
