"""Task handlers of the fleets app: validation, ownership, rollout progression, fleet renders.

Every handler is idempotent (delivery is at-least-once): TemplateVersion names are
deterministic, ownership is recomputed from labels, dispatch skips devices already on the
TemplateVersion and rendering is gated by content hashes.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from devices.models import Device
from devices.owners import attach_fleet_annotations
from devices.rendering import render_devices
from fleets import rollout
from fleets.models import Fleet
from fleets.ownership import recompute_owners
from fleets.templates import (
    create_template_version,
    current_template_version,
    invalid_configuration,
    mark_invalid,
)
from flightctl.api.annotations import TEMPLATE_VERSION
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.api.selectors import label_selector_object_q
from flightctl.tasks import handler, periodic, setting_interval
from repos.choices import Reason


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
    selector_q = label_selector_object_q((fleet.spec or {}).get("selector")) if fleet else None
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

    Handled one device at a time, each task of a mass enrollment locked the fleet,
    dispatched one device and scanned the fleet's members for pending renders: quadratic in
    the fleet's size (10,000 enrollments took 15 minutes to render). Here one pass takes
    every flagged device, page by page, with one ownership query per fleet, one dispatch and
    one render per page. One ``device-owner`` task is queued per organization at a time
    (``enqueue_once``): a device flagged while a pass runs queues the next one, which finds
    it if this pass has not (a duplicate delivery finds nothing left and ends after one
    indexed query). A second worker blocks on the page
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
                attach_fleet_annotations(org_id, unrendered)
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
    ids = list(Fleet.objects.filter(annotations__has_key=TEMPLATE_VERSION)
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


def renew_template_version(tv, changes: list[tuple[str, str]]) -> bool:
    """A dependency of ``tv`` (its fleet's current TemplateVersion) changed: ``changes`` are
    ``(key, new fingerprint)``. Make the fleet a new TemplateVersion whose content is fetched
    afresh and roll it out; False if there is nothing to do (registered with
    repos.dependencies)."""
    with transaction.atomic():
        fleet = Fleet.objects.select_for_update().filter(pk=tv.fleet_id).first()
        if fleet is None or (fleet.annotations or {}).get(TEMPLATE_VERSION) != tv.name:
            return False  # the template changed meanwhile: its new version fetches afresh
        fingerprint = tv.name + "|" + ";".join(f"{key}={value}" for key, value in changes)
        new = create_template_version(fleet, fingerprint=fingerprint)
        if new is None:
            return False
        for key, value in changes:
            record_event(fleet.org_id, "Fleet", fleet.name, Reason.DEPENDENCY_CHANGE,
                         f"Dependency {key} changed to {value}: new template version "
                         f"{new.name}.", actor=WORKER_ACTOR, component=WORKER_COMPONENT,
                         details={"detailType": "DependencyChangeDetected",
                                  "resourceKey": key, "fingerprint": value})
        rollout.progress(fleet)
    rollout.dispatch_fleet(fleet.pk)
    return True
