"""The inventory gauges on ``/metrics`` (service.md §7.1), counted in PostgreSQL."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

ORG = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def fresh(monkeypatch):
    from flightctl.metrics import inventory

    monkeypatch.setattr(inventory, "ttl", 0)  # recount on every scrape
    return inventory


def samples(client) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if re.match(r"flightctl_(devices|fleets|repositories|resourcesyncs|worker|periodic)",
                        line)}


def status(summary: str, updated: str = "UpToDate") -> dict:
    return {"summary": {"status": summary}, "updated": {"status": updated},
            "applicationsSummary": {"status": "Healthy"}}


def test_devices_fleets_and_repositories_are_counted(anon, fresh):
    from devices.models import Device
    from fleets.models import Fleet
    from repos.models import Repository

    Device.objects.bulk_create(
        [Device(name=f"a{i}", owner="Fleet/f1", status=status("Online")) for i in range(3)]
        + [Device(name="b", owner="Fleet/f1", status=status("Unknown", "OutOfDate")),
           Device(name="c", status=status("Online"))])
    Fleet.objects.create(name="f1", spec={}, status={"conditions": [
        {"type": "Valid", "status": "True"}]})
    Fleet.objects.create(name="f2", spec={}, status={"conditions": [
        {"type": "Valid", "status": "False"}]})
    Repository.objects.create(name="r", spec={"type": "git", "url": "https://x/y.git"})
    got = samples(anon)
    labels = f'organization_id="{ORG}"'
    assert got[f'flightctl_devices_summary{{fleet="f1",{labels},status="Online"}}'] == 3
    assert got[f'flightctl_devices_summary{{fleet="f1",{labels},status="Unknown"}}'] == 1
    assert got[f'flightctl_devices_summary{{fleet="",{labels},status="Online"}}'] == 1
    assert got[f'flightctl_devices_update{{fleet="f1",{labels},status="OutOfDate"}}'] == 1
    assert got[f'flightctl_devices_application{{fleet="f1",{labels},status="Healthy"}}'] == 4
    assert got[f'flightctl_fleets{{{labels},status="Valid"}}'] == 1
    assert got[f'flightctl_fleets{{{labels},status="Invalid"}}'] == 1
    assert got[f'flightctl_repositories_total{{{labels}}}'] == 1


def test_a_scrape_costs_the_same_queries_for_ten_or_a_thousand_devices(anon, fresh):
    from devices.models import Device

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            samples(anon)
        return len(captured)

    Device.objects.bulk_create([Device(name=f"d{i}", status=status("Online"))
                                for i in range(10)])
    few = queries()
    Device.objects.bulk_create([Device(name=f"e{i}", owner=f"Fleet/f{i % 7}",
                                       status=status("Online")) for i in range(1000)])
    assert queries() == few


def test_counts_are_cached_between_scrapes(anon):
    from devices.models import Device
    from flightctl.metrics import inventory

    inventory._counted_at = float("-inf")
    samples(anon)
    Device.objects.create(name="late", status=status("Online"))
    with CaptureQueriesContext(connection) as captured:
        samples(anon)
    assert not [q for q in captured if "devices_device" in q["sql"]]


def test_the_task_queue_and_periodic_jobs_are_visible(anon, fresh):
    from django.utils import timezone

    from flightctl.models import PeriodicJob
    from flightctl.tasks import enqueue

    enqueue("device-render", {"org_id": ORG, "name": "nobody"})
    enqueue("device-render", {"org_id": ORG, "name": "nobody-else"})
    ran = timezone.now()
    PeriodicJob.objects.create(name="rollout-progress", next_due=ran, last_run=ran)
    got = samples(anon)
    assert got['flightctl_worker_queue_depth{queue="flightctl"}'] == 2
    assert got["flightctl_worker_failed_tasks"] == 0
    assert got['flightctl_periodic_job_last_run_timestamp_seconds{job="rollout-progress"}'] == (
        pytest.approx(ran.timestamp()))
