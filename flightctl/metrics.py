"""What the fleet looks like, on the user API's ``/metrics`` (service.md §7.1).

django-prometheus already exports the HTTP and database metrics of each process; this adds the
reference's inventory gauges, counted in PostgreSQL when Prometheus scrapes (at most every
``INVENTORY_TTL`` seconds per process, so a fast scraper costs the database nothing more).

Each app counts its own kinds and registers the counting function here with :func:`collector`
when it is ready (the framework names no app):

* ``flightctl_devices_summary``, ``flightctl_devices_application``, ``flightctl_devices_update``
  ``{organization_id, fleet, status}``: devices by summary, application and update status
  (``fleet`` is empty for devices no fleet owns; devices.metrics);
* ``flightctl_fleets{organization_id, status}``: fleets by their ``Valid`` condition
  (``Valid``, ``Invalid``, or ``Unknown`` before the first validation; fleets.metrics);
* ``flightctl_repositories_total{organization_id}`` and
  ``flightctl_resourcesyncs{organization_id, status}``: ResourceSyncs by their ``Synced``
  condition (``Synced``, ``NotSynced``, ``Unknown``; repos.metrics);
* ``flightctl_worker_queue_depth{queue}``, ``flightctl_worker_failed_tasks`` and
  ``flightctl_periodic_job_last_run_timestamp_seconds{job}``: the task queue's backlog, its
  kept failures and whether each periodic job still runs (here).

The device families are one ``GROUP BY`` each over generated, indexed columns; a failing
counting function is logged and leaves the scrape without its families rather than failing it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db.models import Count
from django_q.models import Failure, OrmQ
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily

from flightctl.models import PeriodicJob

log = logging.getLogger(__name__)

INVENTORY_TTL = 30.0
Families = Callable[[], list[GaugeMetricFamily]]
_COLLECTORS: list[Families] = []


def collector(count: Families) -> Families:
    """Register ``count()`` (returning metric families) to be counted on every scrape."""
    if count not in _COLLECTORS:
        _COLLECTORS.append(count)
    return count


def condition_family(model, name: str, condition: str, yes: str, no: str) -> GaugeMetricFamily:
    """A gauge of ``model``'s rows by organization and by their ``condition`` (``yes`` when
    True, ``no`` when False, else ``Unknown``)."""
    family = GaugeMetricFamily(name, f"{model.__name__}s by their {condition} condition.",
                               labels=["organization_id", "status"])
    # Fleets and ResourceSyncs number in the hundreds, not the thousands: their condition is
    # read from each row's status here rather than with a JSON path query.
    rows = model.objects.values_list("org_id", "status").order_by()
    counts: dict = {}
    for org_id, status in rows.iterator(chunk_size=2000):
        value = next((c.get("status") for c in (status or {}).get("conditions") or []
                      if c.get("type") == condition), None)
        label = yes if value == "True" else no if value == "False" else "Unknown"
        counts[(str(org_id), label)] = counts.get((str(org_id), label), 0) + 1
    for (org_id, label), count in sorted(counts.items()):
        family.add_metric([org_id, label], count)
    return family


@collector
def worker_families() -> list[GaugeMetricFamily]:
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
                for count in list(_COLLECTORS):
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
