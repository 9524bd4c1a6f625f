"""One adoption task queued per organization, however many devices its approvals flag.

The ``device-owner`` task runs the organization's whole adoption pass, so an approval queues
one only if none is queued (flightctl.tasks.enqueue_once); the task forgets it is queued
before its pass starts, and a device flagged meanwhile either is seen by that pass or queues
the next one. The queued tasks run through the worker's own entry point
(:func:`flightctl.tasks.execute`), as a django-q worker would.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from tests.test_adoption import ORG, fleet, put_device  # noqa: F401 - fleet is a fixture
from tests.test_enrollment import approve, new_request, pki_dir  # noqa: F401 - a fixture
from tests.test_org_jobs import DEV
from tests.test_organizations import organization

pytestmark = pytest.mark.django_db


def owner_tasks() -> list:
    """The queued ``device-owner`` tasks, oldest first (django-q's ORM broker rows)."""
    from django_q.models import OrmQ

    return [queued for queued in OrmQ.objects.order_by("id")
            if queued.task["args"][0] == "device-owner"]


def run(queued) -> None:
    """Take one queued task and run it as a worker would."""
    from flightctl.tasks import execute

    args = queued.task["args"]
    queued.delete()
    execute(*args)


def pending() -> set[str]:
    from devices.models import Device

    return set(Device.objects.filter(owner_pending=True).values_list("name", flat=True))


def test_many_approvals_in_one_organization_queue_one_adoption_task(api, fleet):  # noqa: F811 - the imported fixture
    from devices.models import Device

    names = [new_request(api, labels={"fleet": "edge", "site": f"s{i}"})[0] for i in range(5)]
    for name in names:
        assert approve(api, name).status_code == 200
    assert len(pending()) == 5
    (task,) = owner_tasks()
    assert task.task["args"][3] == ORG  # the organization is the task's key

    run(task)
    assert pending() == set() and owner_tasks() == []
    assert set(Device.objects.values_list("owner", flat=True)) == {"Fleet/edge"}

    # The pass has run: the next approval queues the next one.
    name = new_request(api, labels={"fleet": "edge"})[0]
    assert approve(api, name).status_code == 200
    run(*owner_tasks())
    assert pending() == set() and owner_tasks() == []


def test_two_organizations_queue_one_task_each(api):
    a, b = organization("org-a"), organization("org-b")
    for org in (a, b):
        for i in range(3):
            body = {"metadata": {"name": f"dev{i}", "labels": {"site": "x"}}}
            response = api.post(f"{DEV}?org_id={org.id}", body, format="json")
            assert response.status_code == 201, response.json()
    assert sorted(task.task["args"][3] for task in owner_tasks()) == sorted(
        [str(a.id), str(b.id)])
    for task in owner_tasks():
        run(task)
    assert pending() == set()


def test_a_device_flagged_after_its_task_was_released_queues_the_next_pass(api, fleet):  # noqa: F811 - the imported fixture
    from flightctl.tasks import release_once

    put_device(api, "early", {"fleet": "edge"})
    (first,) = owner_tasks()
    release_once("device-owner", ORG)  # how a worker's run of ``first`` begins
    put_device(api, "late", {"fleet": "edge"})
    assert len(owner_tasks()) == 2  # the running pass may miss "late": a new one is queued
    for task in owner_tasks():
        run(task)
    assert pending() == set()


def _waiters_on_the_queue_lock() -> int:
    from flightctl.tasks import ONCE_LOCK

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                       " AND classid = %s AND objsubid = 2 AND NOT granted", [ONCE_LOCK])
        return cursor.fetchone()[0]


def _in_thread(target, errors: list) -> threading.Thread:
    def body():
        try:
            target()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=body)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_device_flagged_while_its_task_starts_is_adopted_by_that_pass(api, fleet):  # noqa: F811 - the imported fixture
    """The interleaving that loses a device without the lock: an approval finds the task
    queued (so queues none), then the task's run releases it and its pass ends before the
    approval commits. The release must wait for that approval's commit."""
    from django.db import transaction

    from devices.models import Device
    from flightctl.models import QueuedOnce

    put_device(api, "early", {"fleet": "edge"})  # committed: its task is queued
    (task,) = owner_tasks()
    flagged, commit, errors = threading.Event(), threading.Event(), []

    def approval():  # flags "late" and finds the task queued, then waits to commit
        with transaction.atomic():
            put_device(api, "late", {"fleet": "edge"})
            flagged.set()
            assert commit.wait(30)

    writer = _in_thread(approval, errors)
    try:
        assert flagged.wait(30), errors
        worker = _in_thread(lambda: run(task), errors)
        deadline = time.monotonic() + 30
        while _waiters_on_the_queue_lock() == 0:  # the release waits for the approval
            assert time.monotonic() < deadline and worker.is_alive(), (
                "the task's release did not wait for the open approval", errors)
            time.sleep(0.01)
    finally:
        commit.set()
    writer.join(30)
    worker.join(30)
    assert not errors, errors

    assert owner_tasks() == []  # the approval queued nothing: the running pass covered it
    assert not QueuedOnce.objects.exists()
    assert pending() == set()
    assert dict(Device.objects.values_list("name", "owner")) == {
        "early": "Fleet/edge", "late": "Fleet/edge"}
