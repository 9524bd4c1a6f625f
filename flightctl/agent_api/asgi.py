"""ASGI entry point of the agent API process."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.agent_api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

application = get_asgi_application()

# Every agent call refreshes its device's last-seen time; in this process those writes are
# buffered and flushed once a second in one statement (devices.services.LastSeenBuffer).
from devices.services import last_seen_buffer  # noqa: E402

last_seen_buffer.run_flusher()
