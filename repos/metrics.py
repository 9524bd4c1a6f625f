"""The repositories' and ResourceSyncs' inventory gauges on ``/metrics`` (registered with
flightctl.metrics)."""

from __future__ import annotations

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from flightctl.metrics import collector, condition_family
from repos.models import Repository, ResourceSync


@collector
def repository_families() -> list[GaugeMetricFamily]:
    repos = GaugeMetricFamily("flightctl_repositories_total", "Repositories.",
                              labels=["organization_id"])
    for org_id, count in (Repository.objects.values_list("org_id").annotate(n=Count("id"))
                          .order_by()):
        repos.add_metric([str(org_id)], count)
    return [condition_family(ResourceSync, "flightctl_resourcesyncs", "Synced", "Synced",
                             "NotSynced"), repos]
