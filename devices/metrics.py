"""The devices' inventory gauges on ``/metrics`` (registered with flightctl.metrics)."""

from __future__ import annotations

from django.db.models import Count, F, Value
from django.db.models.functions import Coalesce, Replace
from prometheus_client.core import GaugeMetricFamily

from devices.models import Device
from devices.summary import FLEET_OWNER_PREFIX
from flightctl.metrics import collector

DEVICE_FAMILIES = (
    ("flightctl_devices_summary", "summary_status", "Devices by summary status."),
    ("flightctl_devices_application", "apps_status", "Devices by applications status."),
    ("flightctl_devices_update", "updated_status", "Devices by update status."),
)


@collector
def device_families() -> list[GaugeMetricFamily]:
    """Devices by organization, owning fleet and each status: one GROUP BY per family."""
    families = []
    fleet = Replace(F("owner"), Value(FLEET_OWNER_PREFIX), Value(""))
    for name, column, documentation in DEVICE_FAMILIES:
        family = GaugeMetricFamily(name, documentation,
                                   labels=["organization_id", "fleet", "status"])
        rows = (Device.objects.annotate(fleet=Coalesce(fleet, Value("")))
                .values_list("org_id", "fleet", column).annotate(n=Count("id")).order_by())
        for org_id, fleet_name, status, count in rows:
            family.add_metric([str(org_id), fleet_name or "", status or "Unknown"], count)
        families.append(family)
    return families
