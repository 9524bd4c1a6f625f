"""Django settings of the agent API process: the user API's, with the agent URL map and an
all-async middleware chain.

Every middleware here must be async-capable: one sync-only middleware would make Django run
the async ``/rendered`` long-poll in a thread, and thousands of idle waiters would hold
thousands of threads.
"""

from flightctl.settings import *  # noqa: F401,F403
from flightctl.settings import DATABASES

ROOT_URLCONF = "agent_api.urls"
MIDDLEWARE = ["agent_api.middleware.AgentMiddleware"]
# Under ASGI each request's sync code runs in a short-lived thread; a persistent connection
# would be left behind with it, so connections are "closed" at the end of each request. Closing
# returns them to a psycopg pool (Django's native pooling) instead of ending a PostgreSQL
# backend: opening one per request cost ~2 ms of database CPU each and dominated the agent
# API's database load at fleet scale (docs/scale.md). The pool is small on purpose: requests
# beyond it wait for a connection rather than fanning out into more PostgreSQL backends than
# the machine has cores to run.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# With a pool, each connection is checked when it is handed out: after a database restart
# each pooled connection is found broken there and replaced, instead of failing the request it
# was handed to (docs/reliability.md). Django's CONN_HEALTH_CHECKS would make that check an
# empty round trip on every request; the engine below looks at the socket instead.
DATABASES["default"]["ENGINE"] = "agent_api.dbengine"
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DATABASES["default"]["OPTIONS"] = {
    **DATABASES["default"].get("OPTIONS", {}),
    # A request waits at most 10 s for one: after a database restart the pool reconnects with
    # a growing delay, and a device is better told 503 and when to retry (docs/reliability.md).
    "pool": {"min_size": 2, "max_size": 8, "timeout": 10},
}
# The admin app stays installed (shared models) but is not routed on this port.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410"]
