"""ASGI entry point of the agent API process."""

import gc
import logging
import os
import random
import threading
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agent_api.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()  # sets Django up: import the models after this

from agent_api.hotpath import AgentApplication  # noqa: E402

# The long-poll and status PUTs are answered ahead of Django (agent_api.hotpath
# explains why).
application = AgentApplication(django_application)

# Every agent call refreshes its device's last-seen time; in this process those writes are
# buffered and flushed once a second in one statement (devices.services.LastSeenBuffer).
from devices.services import last_seen_buffer  # noqa: E402

last_seen_buffer.run_flusher()

# After a database restart the connection pool retried with a doubling delay (1, 2, 4, 8 s):
# requests waited out the pool's timeout and devices reported 10-15 s late. Every second
# instead; an attempt against a database that is not there costs a refused connection.
from psycopg_pool.base import AttemptWithBackoff  # noqa: E402

AttemptWithBackoff.DELAY_BACKOFF = 1.0

# What is loaded by now (Django, the models, the URL map: ~90,000 objects) lives as long as the
# process: frozen, the collector's full collections, which stop the whole process, stop walking
# it (docs/scale.md). The young generations keep CPython's thresholds: larger ones made each
# collection, and so each pause, longer.
gc.freeze()

# Full collections on a schedule rather than CPython's. CPython runs one whenever the objects
# promoted to the oldest generation since the last exceed a quarter of it; here every
# long-poll's objects live two minutes and are promoted, so with thousands of devices a full
# collection came every few seconds and stopped the process for 0.2-0.5 s at 1,500 devices a
# process (up to 1.9 s during a 10,000-device rollout): that was the tail of every agent
# call. The young generations are still collected as usual, and those objects are freed by
# reference counting when their request ends; only cycles that outlive two young collections
# wait for the scheduled full collection.
FULL_COLLECTION_SECONDS = 300
gc.set_threshold(700, 10, 1_000_000)


def _collect_on_schedule():
    def loop():
        # Processes start together: a random phase keeps them from pausing at the same moment.
        time.sleep(random.uniform(0.5, 1.5) * FULL_COLLECTION_SECONDS)
        while True:
            gc.collect()
            time.sleep(FULL_COLLECTION_SECONDS)

    threading.Thread(target=loop, name="full-gc", daemon=True).start()


_collect_on_schedule()

# Freed memory back to the system, twice a minute. Every connection of a device costs ~40 KB
# while it is open (OpenSSL's state for a mutual-TLS connection and uvloop's read buffer); when
# connections end, glibc keeps the freed pages for reuse, and after devices reconnected (a
# restart, a network blip) a process held ~100 KB per connection it had ever had at once
# (docs/scale.md). malloc_trim hands every free page back, inside the heap as well as at its
# top; a pass takes milliseconds.
TRIM_SECONDS = 30


def _trim_on_schedule():
    try:
        import ctypes

        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return

    def loop():
        while True:
            time.sleep(TRIM_SECONDS)
            trim(0)

    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()


_trim_on_schedule()


def _watch_collections():
    """Log the collector's long pauses: they stop every request of the process at once."""
    log = logging.getLogger("agent_api.gc")
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
