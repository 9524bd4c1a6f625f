"""A status report's round trips to PostgreSQL, and the pool check that needs none.

The agent API reports outside any Django transaction, where ``report_status`` sends its
``BEGIN`` with the locked read and its ``COMMIT`` with the write: two round trips instead of
five (docs/scale.md, seventh round). These tests run with real commits (``transaction=True``),
as the agent API does, so that path is the one taken.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from psycopg.pq import TransactionStatus

from tests.test_device_health import DEV, create, device_events, reported

pytestmark = pytest.mark.django_db(transaction=True)


def report(**members):
    from devices.services import report_status
    from flightctl.models import DEFAULT_ORG_ID

    return report_status(DEFAULT_ORG_ID, "dev1", reported(**members))


def transaction_status():
    return connection.connection.info.transaction_status


def test_a_report_with_nothing_to_record_takes_two_round_trips_and_commits(api):
    create(api)
    report(config={"renderedVersion": ""})
    before = api.get(f"{DEV}/dev1").json()
    with CaptureQueriesContext(connection) as queries:
        written = report(config={"renderedVersion": ""})
    sql = [q["sql"] for q in queries.captured_queries]
    assert len(sql) == 2, sql
    assert sql[0].startswith("BEGIN; ") and "FOR UPDATE" in sql[0]
    assert sql[1].startswith("SET LOCAL synchronous_commit") and sql[1].endswith("; COMMIT")
    assert transaction_status() == TransactionStatus.IDLE
    after = api.get(f"{DEV}/dev1").json()
    # nothing new: the resource version stays, the device was seen again
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert written.resource_version == int(before["metadata"]["resourceVersion"])
    from devices.models import Device

    assert Device.objects.get(name="dev1").last_seen == written.last_seen  # committed


def test_a_report_with_transitions_is_written_with_its_events(api):
    create(api)
    written = report(config={"renderedVersion": ""})
    assert transaction_status() == TransactionStatus.IDLE
    status = api.get(f"{DEV}/dev1").json()["status"]
    assert status["summary"]["status"] == "Online"
    assert device_events(api) == ["DeviceConnected", "DeviceContentUpToDate"]
    assert written.status["summary"]["status"] == "Online"


def test_a_failed_write_rolls_back_and_leaves_the_connection_usable(api):
    create(api)
    report(config={"renderedVersion": ""})
    stored = api.get(f"{DEV}/dev1").json()["status"]
    # PostgreSQL refuses the NUL character in jsonb: the write fails inside the transaction
    with pytest.raises(DatabaseError):
        report(config={"renderedVersion": ""}, systemInfo={"hostname": "bad\x00name"})
    assert transaction_status() == TransactionStatus.IDLE
    assert api.get(f"{DEV}/dev1").json()["status"]["systemInfo"] == stored["systemInfo"]
    report(config={"renderedVersion": ""}, systemInfo={"hostname": "good"})
    assert api.get(f"{DEV}/dev1").json()["status"]["systemInfo"]["hostname"] == "good"


def test_a_report_for_a_device_that_does_not_exist_ends_its_transaction(api):
    from devices.services import report_status
    from flightctl.models import DEFAULT_ORG_ID

    assert report_status(DEFAULT_ORG_ID, "nobody", reported()) is None
    assert transaction_status() == TransactionStatus.IDLE


def _last_query(observer, pid: int) -> str:
    return observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                            [pid]).fetchone()[0]


def test_the_pool_check_sends_nothing_to_a_healthy_connection_and_catches_a_dead_one():
    from flightctl.database import check_pooled_connection

    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as checked, \
            psycopg.connect(**params, autocommit=True) as observer:
        checked.execute("SELECT 42")
        pid = checked.info.backend_pid
        check_pooled_connection(checked)
        # psycopg_pool's own check would have sent an empty query: the last one is still ours
        assert _last_query(observer, pid) == "SELECT 42"
        observer.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while observer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                               [pid]).fetchone() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(psycopg.OperationalError):
            check_pooled_connection(checked)
