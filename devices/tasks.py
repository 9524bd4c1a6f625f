"""Task handlers and periodic jobs of the devices app (registered with flightctl.tasks).

| task / job | when | does |
|---|---|---|
| `device-owner` | devices created or relabelled (one queued per organization) | adoption pass |
| `device-render` | a standalone device's spec changed, an action, a reconnection | render it |
| `device-render-batch` | many devices at once (e.g. resumed after a restore) | render them |
| `device-connectivity` (periodic) | `connectivity_interval` | devices.health.check_connectivity |
| `console-cleanup` (periodic) | `console_session_timeout` | close sessions of dead processes |

Rendering is gated by content hashes, so a render delivered twice changes nothing the second
time.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from devices import health
from devices.console import sessions
from devices.models import Device
from devices.owners import adopt_pending, attach_fleet_annotations
from devices.rendering import render_devices
from flightctl.config import parse_duration
from flightctl.tasks import handler, periodic, setting_interval


@handler("device-owner")
def match_device(payload: dict) -> None:
    """Devices were created or relabelled (and flagged ``owner_pending`` in those writes'
    transactions): run the adoption pass of their organization. Queued with
    ``enqueue_once`` (key: the organization), so it was released before this runs and a
    device flagged meanwhile queues the next pass."""
    adopt_pending(payload["org_id"])


@handler("device-render")
def render_device(payload: dict) -> None:
    with transaction.atomic():
        device = Device.objects.filter(org_id=payload["org_id"], name=payload["name"]
                                       ).select_for_update().first()
        if device is None:
            return
        attach_fleet_annotations(device.org_id, [device])
        render_devices([device])


@handler("device-render-batch")
def render_device_batch(payload: dict) -> None:
    """Render the listed devices of one organization (devices.hooks.request_renders)."""
    with transaction.atomic():
        devices = list(Device.objects.filter(org_id=payload["org_id"], pk__in=payload["ids"])
                       .select_for_update().order_by("pk"))
        attach_fleet_annotations(payload["org_id"], devices)
        render_devices(devices)


@periodic("device-connectivity", setting_interval("connectivity_interval"))
def check_connectivity() -> None:
    health.check_connectivity()


@periodic("console-cleanup", setting_interval("console_session_timeout"))
def clean_console_sessions() -> None:
    sessions.expire_stale(sessions.STALE_FACTOR
                          * parse_duration(settings.FLIGHTCTL.console_session_timeout))
