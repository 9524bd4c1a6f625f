"""The fleets' inventory gauge on ``/metrics`` (registered with flightctl.metrics)."""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily

from fleets.models import Fleet
from flightctl.metrics import collector, condition_family


@collector
def fleet_families() -> list[GaugeMetricFamily]:
    return [condition_family(Fleet, "flightctl_fleets", "Valid", "Valid", "Invalid")]
