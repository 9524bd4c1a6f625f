"""Shared fixtures: a real PostgreSQL, an authenticated API client, reference manifests."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
import yaml

# The reference contract is read in place from shared/ beside the checkout (as CI lays it out).
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"

# The PostgreSQL of this machine's developers and CI. The product never falls back to it (a
# process without FLIGHTCTL_DATABASE_URL gets the embedded database of its data directory);
# the test process names it explicitly here.
TEST_SERVER_URL = "postgres://postgres@127.0.0.1:5432/postgres"

_embedded = None


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def django_db_modify_db_settings():
    """Use the configured PostgreSQL, else 127.0.0.1:5432, else start an embedded one."""
    global _embedded
    from django.conf import settings

    from flightctl.settings import database_from_url

    default = settings.DATABASES["default"]
    test = default["TEST"]  # with the defaults Django filled in
    if not os.environ.get("FLIGHTCTL_DATABASE_URL"):
        if _reachable("127.0.0.1", 5432):
            url = TEST_SERVER_URL
        else:
            from flightctl.database import EmbeddedPostgres

            _embedded = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="fctl-test-pg-")))
            url = _embedded.start()
        default.update(database_from_url(url))
        from django.db import connections

        del connections["default"]  # rebuilt from the updated settings on next use
    # One test database per run, so concurrent runs on one server do not drop each other's.
    default["TEST"] = {**test, "NAME": f"test_flightctl_{os.getpid()}"}


def pytest_sessionfinish(session, exitstatus):
    if _embedded is not None:
        _embedded.stop()


@pytest.fixture
def admin_user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("admin", is_staff=True, is_superuser=True)


@pytest.fixture
def token(admin_user):
    from flightctl.models import ApiToken

    return ApiToken.issue(admin_user)


@pytest.fixture
def api(token):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def anon(db):
    from rest_framework.test import APIClient

    return APIClient()


def load_example(name: str) -> dict:
    return yaml.safe_load((REFERENCE / "examples" / name).read_text())


def patch(client, url: str, ops: list):
    import json

    return client.generic("PATCH", url, json.dumps(ops), content_type="application/json-patch+json")
