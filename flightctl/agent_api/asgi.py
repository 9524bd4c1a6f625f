"""ASGI entry point of the agent API process."""

import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flightctl.agent_api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()  # sets Django up: import the models after this

from flightctl.agent_api.hotpath import AgentApplication  # noqa: E402

# The long-poll and status PUTs are answered ahead of Django (flightctl.agent_api.hotpath
# explains why).
application = AgentApplication(django_application)

# Every agent call refreshes its device's last-seen time; in this process those writes are
# buffered and flushed once a second in one statement (devices.services.LastSeenBuffer).
from devices.services import last_seen_buffer  # noqa: E402

last_seen_buffer.run_flusher()

# What is loaded by now (Django, the models, the URL map: ~90,000 objects) lives as long as the
# process: frozen, the collector's full collections, which stop the whole process, stop walking
# it (docs/scale.md). The thresholds stay CPython's: larger young generations made each
# collection, and so each pause, longer.
gc.freeze()


def _watch_collections():
    """Log the collector's long pauses: they stop every request of the process at once."""
    import logging
    import time

    log = logging.getLogger("flightctl.agent_api.gc")
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
            return
        paused = time.perf_counter() - started[0]
        if paused > 0.2:
            log.warning("garbage collection (generation %d) paused this process for %.0f ms",
                        info["generation"], paused * 1000)

    gc.callbacks.append(callback)


_watch_collections()
