"""What the fleet looks like, on the user API's ``/metrics`` (service.md §7.1).

django-prometheus already exports the HTTP and database metrics of each process; this adds the
reference's inventory gauges, counted in PostgreSQL when Prometheus scrapes (at most every
``INVENTORY_TTL`` seconds per process, so a fast scraper costs the database nothing more):

* ``flightctl_devices_summary``, ``flightctl_devices_application``, ``flightctl_devices_update``
  ``{organization_id, fleet, status}``: devices by summary, application and update status
  (``fleet`` is empty for devices no fleet owns);
* ``flightctl_fleets{organization_id, status}``: fleets by their ``Valid`` condition
  (``Valid``, ``Invalid``, or ``Unknown`` before the first validation);
* ``flightctl_repositories_total{organization_id}``;
* ``flightctl_resourcesyncs{organization_id, status}``: by their ``Synced`` condition
  (``Synced``, ``NotSynced``, ``Unknown``);
* ``flightctl_worker_queue_depth{queue}``, ``flightctl_worker_failed_tasks`` and
  ``flightctl_periodic_job_last_run_timestamp_seconds{job}``: the task queue's backlog, its
  kept failures and whether each periodic job still runs.

The device families are one ``GROUP BY`` each over generated, indexed columns; a failing query
is logged and leaves the scrape without those families rather than failing it.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db.models import Count, F, Value
from django.db.models.functions import Coalesce, Replace
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

INVENTORY_TTL = 30.0
DEVICE_FAMILIES = (
    ("flightctl_devices_summary", "summary_status", "Devices by summary status."),
    ("flightctl_devices_application", "apps_status", "Devices by applications status."),
    ("flightctl_devices_update", "updated_status", "Devices by update status."),
)


def _device_families() -> list[GaugeMetricFamily]:
    from devices.models import Device

    families = []
    fleet = Replace(F("owner"), Value("Fleet/"), Value(""))
    for name, column, documentation in DEVICE_FAMILIES:
        family = GaugeMetricFamily(name, documentation,
                                   labels=["organization_id", "fleet", "status"])
        rows = (Device.objects.annotate(fleet=Coalesce(fleet, Value("")))
                .values_list("org_id", "fleet", column).annotate(n=Count("id")).order_by())
        for org_id, fleet_name, status, count in rows:
            family.add_metric([str(org_id), fleet_name or "", status or "Unknown"], count)
        families.append(family)
    return families


def _condition_families() -> list[GaugeMetricFamily]:
    from fleets.models import Fleet
    from repos.models import Repository, ResourceSync

    families = []
    for model, name, condition, yes, no in (
            (Fleet, "flightctl_fleets", "Valid", "Valid", "Invalid"),
            (ResourceSync, "flightctl_resourcesyncs", "Synced", "Synced", "NotSynced")):
        family = GaugeMetricFamily(name, f"{model.__name__}s by their {condition} condition.",
                                   labels=["organization_id", "status"])
        # Fleets and ResourceSyncs number in the hundreds, not the thousands: their condition
        # is read from each row's status here rather than with a JSON path query.
        rows = model.objects.values_list("org_id", "status").order_by()
        counts: dict = {}
        for org_id, status in rows.iterator(chunk_size=2000):
            value = next((c.get("status") for c in (status or {}).get("conditions") or []
                          if c.get("type") == condition), None)
            label = yes if value == "True" else no if value == "False" else "Unknown"
            counts[(str(org_id), label)] = counts.get((str(org_id), label), 0) + 1
        for (org_id, label), count in sorted(counts.items()):
            family.add_metric([org_id, label], count)
        families.append(family)
    repos = GaugeMetricFamily("flightctl_repositories_total", "Repositories.",
                              labels=["organization_id"])
    for org_id, count in (Repository.objects.values_list("org_id").annotate(n=Count("id"))
                          .order_by()):
        repos.add_metric([str(org_id)], count)
    families.append(repos)
    return families


def _worker_families() -> list[GaugeMetricFamily]:
    from django_q.models import Failure, OrmQ

    from flightctl.models import PeriodicJob

    depth = GaugeMetricFamily("flightctl_worker_queue_depth",
                              "Tasks in the queue (waiting, delayed or being worked on).",
                              labels=["queue"])
    for key, count in OrmQ.objects.values_list("key").annotate(n=Count("id")).order_by():
        depth.add_metric([key], count)
    failed = GaugeMetricFamily("flightctl_worker_failed_tasks",
                               "Tasks that failed for good and are kept for inspection.")
    failed.add_metric([], Failure.objects.count())
    last_run = GaugeMetricFamily("flightctl_periodic_job_last_run_timestamp_seconds",
                                 "When each periodic job last ran (Unix time).", labels=["job"])
    for name, when in PeriodicJob.objects.exclude(last_run=None).values_list("name", "last_run"):
        last_run.add_metric([name], when.timestamp())
    return [depth, failed, last_run]


class InventoryCollector:
    """A prometheus_client collector whose families are recounted at most every ``ttl``."""

    def __init__(self, ttl: float = INVENTORY_TTL):
        self.ttl = ttl
        self._lock = threading.Lock()
        self._families: list = []
        self._counted_at = float("-inf")

    def describe(self):
        return []  # nothing at registration: the database may not be there yet

    def collect(self):
        with self._lock:
            if time.monotonic() - self._counted_at >= self.ttl:
                families = []
                for count in (_device_families, _condition_families, _worker_families):
                    try:
                        families += count()
                    except Exception:  # a scrape must not fail because one query did
                        log.exception("inventory metrics: %s failed", count.__name__)
                self._families, self._counted_at = families, time.monotonic()
            return list(self._families)


inventory = InventoryCollector()
_registered = False


def register() -> None:
    """Add the inventory to the default registry (that django-prometheus serves), once."""
    global _registered
    if not _registered:
        REGISTRY.register(inventory)
        _registered = True
