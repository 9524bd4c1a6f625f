"""Task handlers of the fleets app: validation, ownership, rollout progression, rendering.

Every handler is idempotent (delivery is at-least-once): TemplateVersion names are
deterministic, ownership is recomputed from labels, dispatch skips devices already on the
TemplateVersion and rendering is gated by content hashes.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from devices.models import Device
from fleets import rollout
from fleets.models import Fleet
from fleets.ownership import recompute_owners
from fleets.selection import label_selector_q
from fleets.templates import create_template_version, current_template_version
from flightctl.config import parse_duration
from flightctl.tasks import handler, periodic, setting_interval


def _fleet(payload: dict, *, lock: bool = True) -> Fleet | None:
    queryset = Fleet.objects.restrict(payload["org_id"]).filter(name=payload["name"])
    return (queryset.select_for_update() if lock else queryset).first()


@handler("fleet-validate")
def validate_fleet(payload: dict) -> None:
    with transaction.atomic():
        fleet = _fleet(payload)
        if fleet is None:
            return
        # Match members first (idempotent): the selector task of a new fleet may not have run
        # yet, and a rollout must not start on an empty fleet and then race its members.
        _match(fleet.org_id, fleet.name, fleet)
        create_template_version(fleet)
        rollout.progress(fleet)


@handler("fleet-progress")
def progress_fleet(payload: dict) -> None:
    with transaction.atomic():
        fleet = _fleet(payload)
        if fleet is not None:
            rollout.progress(fleet)


def _after_owner_changes(org_id, changes) -> None:
    """Devices that joined a fleet get its current template unless a batch rollout is busy."""
    joined: dict[str, list[int]] = {}
    for device, _old, new in changes:
        if new and new.startswith("Fleet/"):
            joined.setdefault(new.split("/", 1)[1], []).append(device.pk)
    for name, ids in joined.items():
        fleet = Fleet.objects.restrict(org_id).filter(name=name).select_for_update().first()
        tv = current_template_version(fleet) if fleet else None
        if tv is None:
            continue
        if rollout.in_explicit_batch(fleet, tv):
            continue  # a later batch (at the latest the final implicit one) picks them up
        rollout.dispatch(fleet, tv, Device.objects.filter(pk__in=ids))


def _match(org_id, name: str, fleet: Fleet | None) -> None:
    q = Q(owner=f"Fleet/{name}") | Q(service_conditions__contains=[
        {"type": "MultipleOwners", "status": "True"}])
    selector_q = label_selector_q((fleet.spec or {}).get("selector")) if fleet else None
    if selector_q is not None:
        q |= selector_q
    changes = recompute_owners(org_id, Device.objects.filter(q))
    _after_owner_changes(org_id, changes)


@handler("fleet-selector")
def match_fleet_devices(payload: dict) -> None:
    with transaction.atomic():
        _match(payload["org_id"], payload["name"], _fleet(payload, lock=False))


@handler("device-owner")
def match_device(payload: dict) -> None:
    """A device was created or relabelled: its fleet may change, and so may its spec (labels
    feed the template's placeholders)."""
    with transaction.atomic():
        devices = Device.objects.filter(org_id=payload["org_id"], name=payload["name"])
        changes = recompute_owners(payload["org_id"], devices)
        _after_owner_changes(payload["org_id"], changes)
        device = devices.first()
        if device is None or changes or not (device.owner or "").startswith("Fleet/"):
            return
        fleet = Fleet.objects.restrict(device.org_id).filter(
            name=device.owner.split("/", 1)[1]).select_for_update().first()
        tv = current_template_version(fleet) if fleet else None
        if tv is not None:
            rollout.dispatch(fleet, tv, devices.filter(rollout._on_tv(tv.name)), refresh=True)


@handler("device-render")
def render_device(payload: dict) -> None:
    from devices.rendering import render_devices

    with transaction.atomic():
        device = Device.objects.filter(org_id=payload["org_id"], name=payload["name"]
                                       ).select_for_update().first()
        if device is None:
            return
        fleet = None
        if device.owner and device.owner.startswith("Fleet/"):
            fleet = Fleet.objects.restrict(device.org_id).filter(
                name=device.owner.split("/", 1)[1]).first()
        device.fleet_annotations = fleet.annotations if fleet else {}
        render_devices([device])


@handler("fleet-render")
def render_fleet(payload: dict) -> None:
    """Re-render every member (e.g. a fleet-wide application stop/start changed overlays)."""
    with transaction.atomic():
        fleet = _fleet(payload)
        if fleet is None:
            return
        members = rollout._members(fleet).select_for_update().order_by("pk")
        last = 0
        while page := list(members.filter(pk__gt=last)[: rollout.PAGE]):
            last = page[-1].pk
            rollout._render(page, fleet)


@periodic("rollout-progress", setting_interval("rollout_interval"))
def progress_all() -> None:
    """Advance every fleet that has a TemplateVersion (batches, budgets, late joiners)."""
    ids = list(Fleet.objects.filter(annotations__has_key="fleet-controller/templateVersion")
               .values_list("pk", flat=True))
    for pk in ids:
        with transaction.atomic():
            fleet = Fleet.objects.filter(pk=pk).select_for_update(skip_locked=True).first()
            if fleet is not None:
                rollout.progress(fleet)


@periodic("event-cleanup", setting_interval("event_cleanup_interval"))
def clean_events() -> None:
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from flightctl.models import Event

    retention = parse_duration(settings.FLIGHTCTL.event_retention)
    Event.objects.filter(created_at__lt=timezone.now() - timedelta(seconds=retention)).delete()


@periodic("device-connectivity", setting_interval("connectivity_interval"))
def check_connectivity() -> None:
    try:
        from devices.health import check_connectivity as check
    except ImportError:  # health computation not installed in this build
        return
    check()
