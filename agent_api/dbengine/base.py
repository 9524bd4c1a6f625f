"""The agent API's database engine: Django's PostgreSQL engine, whose pooled connections are
checked without a round trip when they are handed out.

Django offers one check of a pooled connection, psycopg_pool's (``CONN_HEALTH_CHECKS``): an
empty query each time a connection is taken, one more round trip on every request, and the
agent API's requests are mostly one or two statements (docs/scale.md, seventh round). Django
passes that check to the pool itself, so another cannot be configured; this engine looks at
each connection after the pool hands it out instead (``check_pooled_connection``), gives a
broken one back closed (the pool drops it and opens another) and takes the next.
"""

from __future__ import annotations

import psycopg
from django.db.backends.postgresql import base

from flightctl.database import check_pooled_connection


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        pool = self.pool
        if pool is None:
            return connection
        # At most every connection the pool holds can be stale (a database restart); the
        # one after those is new.
        for _ in range(pool.max_size):
            try:
                check_pooled_connection(connection)
                return connection
            except psycopg.Error:
                connection.close()
                pool.putconn(connection)
                connection = super().get_new_connection(conn_params)
        return connection
