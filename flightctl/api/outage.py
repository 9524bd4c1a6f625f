"""A database that is not there costs clients a retry, never a 500.

When PostgreSQL restarts or is unreachable, every request that needs it fails with a driver
error (a refused or broken connection, a pool that cannot hand one out, a backend terminated
by the server's shutdown). Those answer ``503 Service Unavailable`` with a ``Status`` body and
``Retry-After``, on both APIs. The delay is drawn from a range per answer: a blip that fails
thousands of devices' requests in the same second must not bring them all back in the same
second too.
"""

from __future__ import annotations

import random

import psycopg
from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

from flightctl.api.errors import status_body

#: the range (seconds) Retry-After is drawn from
RETRY_AFTER_SECONDS = (1, 6)
MESSAGE = "the database is unavailable; retry later"


def is_outage(exc: BaseException | None) -> bool:
    """Whether ``exc`` says the database cannot be reached (Django's wrapped errors and the
    driver's own, which code outside the ORM and the connection pool raise)."""
    return isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError
                      | psycopg.InterfaceError)


def retry_after() -> str:
    return str(random.randint(*RETRY_AFTER_SECONDS))


def unavailable() -> tuple[int, dict, dict]:
    """(503, Status body, headers) of a request the database's absence failed."""
    return 503, status_body(503, MESSAGE), {"Retry-After": retry_after()}


def unavailable_response() -> JsonResponse:
    code, body, headers = unavailable()
    response = JsonResponse(body, status=code)
    for key, value in headers.items():
        response[key] = value
    return response
