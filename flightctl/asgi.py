"""ASGI entry point of the user API (uvicorn, started by ``flightctl-server serve``).

WebSockets (``/ws/v1/...``, flightctl.api.websockets) are answered here in the event loop;
every other request goes to Django's WSGI application through a2wsgi's thread pool of
``threads`` threads. The REST views are synchronous: behind a thread pool they run truly
concurrently, where Django's own ASGI handler would run them one at a time on one thread.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.settings")

from flightctl.supervision import workers_die_with_master  # noqa: E402

# uvicorn's workers are not stopped with a killed master: each asks the kernel for a signal.
workers_die_with_master()

from a2wsgi import WSGIMiddleware  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django_application = get_wsgi_application()  # sets Django up: the routes need the apps

from flightctl.api.websockets import UserApplication  # noqa: E402

application = UserApplication(WSGIMiddleware(django_application,
                                             workers=settings.FLIGHTCTL.threads))
