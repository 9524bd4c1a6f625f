"""A Django database backend that refuses to connect, naming how to get a database.

``flightctl.settings`` uses it when ``FLIGHTCTL_DATABASE_URL`` is not set. Every entry point of
the product (``flightctl-server``, ``manage.py``) resolves the database before Django starts —
the configured URL, or the embedded PostgreSQL of the data directory — so this backend is only
reached by code that imports the settings on its own. It used to fall back to a PostgreSQL on
127.0.0.1:5432, which silently wrote to someone else's database.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base

MESSAGE = ("no database configured: run through `flightctl-server` or `manage.py`, which use "
           "the embedded PostgreSQL of the data directory, or set FLIGHTCTL_DATABASE_URL")


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        raise ImproperlyConfigured(MESSAGE)

    def get_connection_params(self):
        return {}
