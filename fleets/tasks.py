"""Task handlers of the fleets app: validation, ownership, rollout progression, rendering.

Every handler is idempotent (delivery is at-least-once): TemplateVersion names are
deterministic, ownership is recomputed from labels, dispatch skips devices already on the
TemplateVersion and rendering is gated by content hashes.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from devices.models import Device
from devices.rendering import render_devices
from fleets import rollout
from fleets.models import Fleet
from fleets.ownership import recompute_owners
from fleets.selection import label_selector_q
from fleets.templates import (
    create_template_version,
    current_template_version,
    invalid_configuration,
    mark_invalid,
)
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
        problem = invalid_configuration(fleet)
        if problem:
            mark_invalid(fleet, problem)
        else:
            create_template_version(fleet)
        rollout.progress(fleet)
    rollout.dispatch_fleet(fleet.pk)


@handler("fleet-progress")
def progress_fleet(payload: dict) -> None:
    with transaction.atomic():
        fleet = _fleet(payload)
        if fleet is None:
            return
        rollout.progress(fleet)
    rollout.dispatch_fleet(fleet.pk)


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


def adopt_pending(org_id) -> int:
    """The adoption pass: recompute the owner of every device of ``org_id`` created or
    relabelled since (``owner_pending``), a page at a time, and send each its spec.

    A mass enrollment queues one ``device-owner`` task per new device. Handled one device at
    a time, each task locked the fleet, dispatched one device and scanned the fleet's members
    for pending renders: quadratic in the fleet's size (10,000 enrollments took 15 minutes to
    render). Here the first task to run takes every flagged device, page by page, with one
    ownership query per fleet, one dispatch and one render per page; the tasks queued behind
    it find nothing left and end after one indexed query. A second worker blocks on the page
    being adopted and then finds those rows no longer flagged (PostgreSQL re-checks a locked
    row's condition), so no device is adopted twice or skipped. Returns how many devices
    were adopted.
    """
    adopted = 0
    while True:
        with transaction.atomic():
            ids = list(Device.objects.filter(org_id=org_id, owner_pending=True)
                       .select_for_update().order_by("pk")
                       .values_list("pk", flat=True)[: rollout.PAGE])
            if not ids:
                return adopted
            devices = Device.objects.filter(pk__in=ids)
            changes = recompute_owners(org_id, devices)
            _after_owner_changes(org_id, changes)
            moved = {device.pk for device, _old, _new in changes}
            _refresh_members(org_id, devices.exclude(pk__in=moved))
            # Devices no fleet sends a spec (unowned, or waiting for a later batch) still get
            # their first render, so their agents have a version to report.
            unrendered = list(devices.filter(rendered_version=0).select_for_update())
            if unrendered:
                _attach_fleet_annotations(org_id, unrendered)
                render_devices(unrendered)
            devices.update(owner_pending=False)
            adopted += len(ids)


def _refresh_members(org_id, devices) -> None:
    """Relabelled devices that stayed in their fleet: labels feed the template, re-dispatch."""
    by_fleet: dict[str, list[int]] = {}
    for pk, owner in devices.filter(owner__startswith="Fleet/").values_list("pk", "owner"):
        by_fleet.setdefault(owner.split("/", 1)[1], []).append(pk)
    for name, ids in by_fleet.items():
        fleet = Fleet.objects.restrict(org_id).filter(name=name).select_for_update().first()
        tv = current_template_version(fleet) if fleet else None
        if tv is not None:
            rollout.dispatch(fleet, tv, Device.objects.filter(pk__in=ids).filter(
                rollout._on_tv(tv.name)), refresh=True)


def _attach_fleet_annotations(org_id, devices: list[Device]) -> None:
    names = {d.owner.split("/", 1)[1] for d in devices if (d.owner or "").startswith("Fleet/")}
    annotations = dict(Fleet.objects.restrict(org_id).filter(name__in=names)
                       .values_list("name", "annotations")) if names else {}
    for device in devices:
        owner = device.owner or ""
        device.fleet_annotations = (annotations.get(owner.split("/", 1)[1]) or {}
                                    if owner.startswith("Fleet/") else {})


@handler("device-owner")
def match_device(payload: dict) -> None:
    """A device was created or relabelled (and flagged ``owner_pending`` in that write's
    transaction): run the adoption pass of its organization."""
    adopt_pending(payload["org_id"])


@handler("device-render")
def render_device(payload: dict) -> None:
    with transaction.atomic():
        device = Device.objects.filter(org_id=payload["org_id"], name=payload["name"]
                                       ).select_for_update().first()
        if device is None:
            return
        _attach_fleet_annotations(device.org_id, [device])
        render_devices([device])


@handler("device-render-batch")
def render_device_batch(payload: dict) -> None:
    """Render the listed devices of one organization (devices.rendering.request_renders)."""
    with transaction.atomic():
        devices = list(Device.objects.filter(org_id=payload["org_id"], pk__in=payload["ids"])
                       .select_for_update().order_by("pk"))
        _attach_fleet_annotations(payload["org_id"], devices)
        render_devices(devices)


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
            if fleet is None:
                continue  # busy elsewhere: that holder advances it
            rollout.progress(fleet)
        # In the tick's transaction nothing commits before the tick does: only a short pass
        # here (devices a dispatch missed); a longer one goes on in a fleet-progress task.
        rollout.dispatch_fleet(pk, seconds=2)


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
