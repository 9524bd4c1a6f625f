"""Device operations shared by the user API, the agent API and the task workers.

The agent API (enrollment app) calls these rather than touching Device rows itself, so the
rules for rendered specs, agent status and last-seen live in one place.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from devices.models import Device
from devices.status import complete_status
from flightctl.api.errors import API_VERSION

#: PostgreSQL NOTIFY channel on which renders are announced; payload "<org_id>/<name>/<version>".
RENDER_CHANNEL = "flightctl_rendered"
RENDERED_VERSION_ANNOTATION = "device-controller/renderedVersion"


def rendered_device_body(device: Device) -> dict:
    """The Device as ``GET /devices/{name}/rendered`` returns it to its agent."""
    from devices.api.serializers import DeviceSerializer

    body = DeviceSerializer().to_representation(device)
    body["apiVersion"] = API_VERSION
    body["spec"] = device.rendered_spec or {}
    return body


def notify_rendered(device: Device) -> None:
    """Announce a new render; delivered at commit, so waiters never see an uncommitted spec."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, %s)",
            [RENDER_CHANNEL, f"{device.org_id}/{device.name}/{device.rendered_version}"],
        )


def touch_last_seen(org_id, name: str) -> None:
    Device.objects.filter(org_id=org_id, name=name).update(last_seen=timezone.now())


def record_agent_status(device: Device, status: dict) -> Device:
    """Store the status an agent reported, keeping the service-owned parts.

    The service computes ``summary``, ``updated``, ``applicationsSummary`` and ``lifecycle``
    (api.md §4.3); an agent's ``Unknown`` for those is replaced by the stored value.
    """
    stored = complete_status(device.status)
    merged = complete_status(status)
    for key in ("summary", "updated", "applicationsSummary", "lifecycle", "integrity"):
        if (merged.get(key) or {}).get("status") in (None, "", "Unknown"):
            merged[key] = stored.get(key)
    with transaction.atomic():
        Device.objects.filter(pk=device.pk).update(status=merged, last_seen=timezone.now())
    device.status = merged
    return device
