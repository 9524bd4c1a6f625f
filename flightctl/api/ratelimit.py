"""Rate limits of the user API, counted in PostgreSQL so they hold across every worker process
and server (docs/auth.md, "Rate limits").

A limit is ``REQUESTS/WINDOW`` in fixed windows: one ``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING`` per request counts the request under each of its keys (the client address, and the
bearer credential or user name where known) in the current window of the table
``RateLimitCounter`` and returns the counts, so a request costs one statement whatever the
number of processes. Over the limit the answer is 429 with a ``Status`` body and
``Retry-After`` (seconds to the window's end).

Classes of requests: the token endpoints (``POST /api/v1/auth/<provider>/token``,
``auth_rate_limit``, on by default), failed passwords (``login_failure_limit``, counted by the
password issuer per user name and address), everything else under ``/api/v1/``
(``api_rate_limit``, off by default). The client address is the TCP peer's, or the one a peer
in ``rate_limit_trusted_proxies`` names in ``X-Forwarded-For`` (resolved by uvicorn, which
is told to trust those peers only).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection

from flightctl.api.errors import status_response
from flightctl.config import parse_rate
from flightctl.models import RateLimitCounter

TOKEN_PATH = re.compile(r"^/api/v1/auth/[^/]+/token$")
_UPSERT = (
    f"INSERT INTO {RateLimitCounter._meta.db_table} (key, window_start, hits) "
    "SELECT k, %s, 1 FROM unnest(%s::text[]) AS k "
    "ON CONFLICT (key, window_start) DO UPDATE "
    f"SET hits = {RateLimitCounter._meta.db_table}.hits + 1 RETURNING hits"
)


def client_address(request) -> str:
    """The client's address: the TCP peer's, or the one a trusted proxy named (uvicorn
    resolves ``X-Forwarded-For`` for the peers in ``rate_limit_trusted_proxies`` only)."""
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _window(seconds: float, now: float) -> tuple[datetime, int]:
    start = math.floor(now / seconds) * seconds
    retry = max(1, math.ceil(start + seconds - now))
    return datetime.fromtimestamp(start, UTC), retry


def hit(scope: str, keys: list[str], rate: tuple[int, float]) -> tuple[bool, int]:
    """Count a request under ``keys``; ``(over the limit, seconds to the window's end)``."""
    window_start, retry = _window(rate[1], time.time())
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT, [window_start, [f"{scope}:{key}" for key in keys]])
        counts = [row[0] for row in cursor.fetchall()]
    return max(counts, default=0) > rate[0], retry


def over(scope: str, keys: list[str], rate: tuple[int, float]) -> tuple[bool, int]:
    """Whether ``keys`` have used up the current window already (counting nothing)."""
    window_start, retry = _window(rate[1], time.time())
    full = RateLimitCounter.objects.filter(
        key__in=[f"{scope}:{key}" for key in keys], window_start=window_start,
        hits__gte=rate[0]).exists()
    return full, retry


def too_many(retry: int, what: str = "requests"):
    return status_response(429, f"too many {what}: try again in {retry}s",
                           headers={"Retry-After": str(retry)})


class RateLimitMiddleware:
    """The per-request limits of the user API (the token endpoints, and ``api_rate_limit``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        config = settings.FLIGHTCTL
        path = request.path
        if request.method == "POST" and TOKEN_PATH.match(path):
            scope, rate = "auth", parse_rate(config.auth_rate_limit)
        elif path.startswith("/api/v1/"):
            scope, rate = "api", parse_rate(config.api_rate_limit)
        else:
            rate = None
        if rate is not None:
            keys = [f"ip:{client_address(request)}"]
            credential = request.META.get("HTTP_AUTHORIZATION", "")
            if credential:
                keys.append("cred:" + hashlib.sha256(credential.encode()).hexdigest()[:32])
            limited, retry = hit(scope, keys, rate)
            if limited:
                return too_many(retry)
        return self.get_response(request)

