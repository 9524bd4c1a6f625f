"""Applying the database schema: once, from any number of processes, never backwards.

In a deployment every server process may start at the same moment (a host boots, an upgrade
replaces all containers), and each may be the one that finds the schema out of date. Django's
``migrate`` is not safe to run twice at once (both would create the same tables), so it runs
under a PostgreSQL advisory lock: the first process applies the migrations, the others wait and
then find nothing left to do. A database that holds migrations this code does not know was
migrated by a newer release; running on it could corrupt data the newer schema means
differently, so that is refused before anything is changed.
"""

from __future__ import annotations

from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader

# Any constant works; this one is "flightctl" in ASCII, 64 bits wide, so that it cannot collide
# with the small integers applications pick for their own advisory locks.
MIGRATION_LOCK = 0x666C69676874637C


class NewerSchema(RuntimeError):
    """The database was migrated by a newer release than this one (a downgrade)."""


def unknown_migrations() -> list[str]:
    """Applied migrations (``app.name``) this code has no file for."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    known = set(loader.disk_migrations)
    # A squashed migration replaces the ones it was made of: both spellings are known.
    for migration in loader.disk_migrations.values():
        known.update(migration.replaces or ())
    return sorted(f"{app}.{name}" for app, name in loader.applied_migrations
                  if (app, name) not in known)


def migrate_exclusively(verbosity: int = 0, on_wait=None) -> None:
    """Apply the migrations under the cluster-wide migration lock; raises :class:`NewerSchema`
    on a database of a newer release. ``on_wait`` is called once when another process holds
    the lock (so that a waiting process can say why it waits)."""
    with connection.cursor() as cursor:
        # A session-level lock, not a transaction's: migrate commits per migration.
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATION_LOCK])
        if not cursor.fetchone()[0]:
            if on_wait:
                on_wait()
            cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK])
    try:
        unknown = unknown_migrations()
        if unknown:
            raise NewerSchema(
                f"the database was migrated by a newer release ({len(unknown)} migrations this "
                f"release does not know, e.g. {unknown[0]}): downgrades are not supported; "
                "run the newer release or restore a backup taken before the upgrade")
        call_command("migrate", interactive=False, verbosity=verbosity)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK])


def wait_for_database(seconds: float) -> None:
    """Return once the database accepts connections, retrying for up to ``seconds`` (a
    database container starting beside this process initialises for a while on its first
    start); re-raises the last error after that."""
    import time

    from django.db import OperationalError

    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.ensure_connection()
            return
        except OperationalError:
            if time.monotonic() >= deadline:
                raise
            connection.close()
            time.sleep(1)
