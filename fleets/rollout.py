"""Rollouts: moving a fleet's devices to its newest TemplateVersion, batch by batch.

Two steps per device, both set-based (pages of 1,000 rows, one UPDATE per page):

* **dispatch** writes the device's spec (the TemplateVersion resolved for it) and the
  annotation ``fleet-controller/templateVersion``; a resolution error (e.g. a missing label)
  marks only that device (``lastRolloutError``, ``SpecValid=False``);
* **render** turns the spec into what the agent receives (``devices.rendering``), gated by the
  disruption budget: per group of ``groupBy`` label values, no more than ``maxUnavailable``
  devices may be busy (rendered but not yet reported) and at least ``minAvailable`` must stay
  available.

Without ``deviceSelection`` every member is dispatched at once, a committed page at a time
(:func:`dispatch_fleet`). With a ``BatchSequence`` the
fleet walks this state machine, kept in fleet annotations and advanced by :func:`progress`
(each periodic tick, and right after anything that may unblock it):

    batchNumber: -1 (preliminary) -> 0 .. n-1 (explicit batches) -> n (final implicit batch)
                 -> n+1 (finished: RolloutInProgress=False/Inactive)

A batch is *selected* (devices marked ``selectedForRollout``), must be *approved*
(automatically when the previous batch met its success threshold and the approval method is
automatic; by ``approve`` otherwise), is *dispatched*, and is *complete* when every selected
device has rendered the TemplateVersion and has either reported it, failed (``Updating`` reason
``Error``) or timed out (``defaultUpdateTimeout``). Completing writes the batch report; a report
below the threshold suspends the rollout (``Suspended``) until someone approves. ``pause``
stops all progress (``Suspended``, "paused") until ``resume``. A new TemplateVersion or a
changed batch definition restarts from the preliminary batch.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from devices import bulk
from devices.models import Device
from devices.rendering import SPEC_VALID, render_devices
from fleets import choices as c
from fleets.models import Fleet, TemplateVersion
from fleets.pacing import Pace
from fleets.templates import TemplateError, current_template_version, device_spec
from flightctl.api import annotations as keys
from flightctl.api.conditions import set_condition, update_conditions
from flightctl.api.errors import bad_request, not_found
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.api.selectors import label_selector_object_q
from flightctl.config import parse_duration
from flightctl.tasks import enqueue

PAGE = 1000
#: a failed update: the agent's Updating condition with reason Error (service.md §2.5)
UPDATE_FAILED = Q(status__contains={"conditions": [{"type": "Updating", "reason": "Error"}]})
ROLLOUT = "RolloutInProgress"
INACTIVE = "Rollout is not in progress"


def _members(fleet: Fleet):
    return Device.objects.filter(org_id=fleet.org_id, owner=f"Fleet/{fleet.name}")


def _on_tv(tv_name: str) -> Q:
    # Containment rather than a key lookup: ``annotations->'k' = v`` is NULL for a missing key,
    # so its negation would silently drop devices that never had the annotation.
    return Q(annotations__contains={keys.TEMPLATE_VERSION: tv_name})


def _event(fleet: Fleet, reason: str, message: str, details: dict | None = None,
           type_: str = "Normal") -> None:
    record_event(fleet.org_id, "Fleet", fleet.name, reason, message, actor=WORKER_ACTOR,
                 type=type_, details=details, component=WORKER_COMPONENT)


# -- dispatch ---------------------------------------------------------------------------------


def dispatch(fleet: Fleet, tv: TemplateVersion, devices, *, refresh: bool = False) -> int:
    """Write the TemplateVersion's spec, resolved per device, to ``devices`` not yet on it
    (``refresh``: also to those on it, e.g. after their labels changed)."""
    dispatched = 0
    queryset = (devices if refresh else devices.exclude(_on_tv(tv.name))).order_by("pk")
    last_pk = 0
    while True:
        with transaction.atomic():
            page = list(queryset.filter(pk__gt=last_pk).select_for_update()[:PAGE])
            if not page:
                break
            last_pk = page[-1].pk
            dispatched += len(_dispatch_page(tv, page))
    render_pending(fleet, tv)
    return dispatched


#: advisory lock class of a fleet's dispatch pass (the second key is the fleet's id)
DISPATCH_LOCK = 7_241


def dispatch_fleet(fleet_pk: int, *, seconds: float | None = None) -> int:
    """The fleet-wide rollout of a fleet without batches, one committed transaction per page.

    Called by the task handlers *after* the transaction that created the TemplateVersion has
    committed. Each page dispatches and renders its members and commits, which releases their
    rows and sends their notifications, so agents fetch page 1 while page 2 is rendered; in
    one transaction, 10,000 devices stayed locked (their status reports queued behind the
    locks) and were all woken at once when everything had been rendered. Each page locks the
    fleet and re-reads its TemplateVersion, so no page writes a superseded spec: a newer one
    created meanwhile restarts the pass from the first member.

    Pages are paced, starting at ``rollout_dispatch_rate`` devices a second and adapting to
    how fast the agent API delivers them (fleets.pacing). Every render wakes its device's
    long-poll, and each woken agent fetches its spec, applies it and reports: woken all at
    once, 10,000 devices queued for tens of seconds behind each other on the agent API
    (docs/scale.md). Paced below what the agent API can serve, every device gets its spec
    within moments of its render, and the whole fleet sooner than unpaced.

    One pass per fleet at a time (a session advisory lock; another caller returns at once).
    A pass ends after ``seconds`` (default: half the task timeout, so a task is never killed
    mid-pass) and queues ``fleet-progress`` to go on. Safe to repeat: devices already on the
    TemplateVersion are skipped. Returns how many devices it dispatched.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s::int)", [DISPATCH_LOCK, fleet_pk])
        if not cursor.fetchone()[0]:
            return 0  # another worker is dispatching this fleet
    try:
        if seconds is None:
            seconds = parse_duration(settings.FLIGHTCTL.task_timeout) / 2
        return _dispatch_fleet(fleet_pk, time.monotonic() + seconds)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s::int)", [DISPATCH_LOCK, fleet_pk])


def _dispatch_fleet(fleet_pk: int, deadline: float) -> int:
    pace = Pace(settings.FLIGHTCTL.rollout_dispatch_rate)  # adapts (fleets.pacing)
    dispatched, last_pk, started, fleet, tv = 0, 0, "", None, None
    next_page = time.monotonic()
    while True:
        if next_page > deadline and fleet is not None:  # go on in a new task (lock released)
            enqueue("fleet-progress", {"org_id": str(fleet.org_id), "name": fleet.name,
                                       "kind": "Fleet"}, delay=1)
            return dispatched
        time.sleep(max(0.0, next_page - time.monotonic()))
        with transaction.atomic():
            fleet = Fleet.objects.select_for_update().filter(pk=fleet_pk).first()
            tv = current_template_version(fleet) if fleet else None
            if tv is None or _policy(fleet).get("deviceSelection"):
                return dispatched
            if tv.name != started:  # a newer TemplateVersion: it goes to every member
                started, last_pk = tv.name, 0
            page = list(_members(fleet).exclude(_on_tv(tv.name)).filter(pk__gt=last_pk)
                        .select_for_update().order_by("pk")[:pace.page_size(PAGE)])
            if not page:
                break
            last_pk = page[-1].pk
            next_page += len(page) / pace.rate
            sent = _dispatch_page(tv, page)
            dispatched += len(sent)
            if not _policy(fleet).get("disruptionBudget"):
                _render(sent, fleet)
                pace.rendered([device.pk for device in sent])
        pace.adjust()
    render_pending(fleet, tv)  # what a disruption budget holds back, and any stragglers
    return dispatched


def _dispatch_page(tv: TemplateVersion, page: list[Device]) -> list[Device]:
    """Dispatch one locked page; returns its devices that now have the spec (updated in
    memory as written, ready to render)."""
    ok, failed, sent = [], [], []
    for device in page:
        annotations = dict(device.annotations or {})
        try:
            spec = device_spec(tv.status, device)
        except TemplateError as exc:
            annotations[keys.LAST_ROLLOUT_ERROR] = str(exc)
            conditions = copy.deepcopy(device.service_conditions or [])
            update_conditions(conditions, SPEC_VALID, False, "Invalid", str(exc))
            failed.append({"id": device.pk, "annotations": annotations,
                           "service_conditions": conditions})
            continue
        annotations.pop(keys.LAST_ROLLOUT_ERROR, None)
        annotations[keys.TEMPLATE_VERSION] = tv.name
        changed = spec != (device.spec or {})
        if changed:  # e.g. a relabelled member: its rendered TemplateVersion is stale
            annotations.pop(keys.RENDERED_TEMPLATE_VERSION, None)
        ok.append({"id": device.pk, "spec": spec, "annotations": annotations,
                   "spec_changed": changed})
        device.spec, device.annotations = spec, annotations
        sent.append(device)
    bulk.write_each(ok)
    bulk.write_each(failed)
    return sent


# -- render, within the disruption budget -----------------------------------------------------


def _reported(device: Device) -> str:
    return str(((device.status or {}).get("config") or {}).get("renderedVersion") or "")


def _busy(device: Device) -> bool:
    return device.rendered_version > 0 and _reported(device) != str(device.rendered_version)


def _render(devices: list[Device], fleet: Fleet) -> int:
    annotations = fleet.annotations or {}
    for device in devices:
        device.fleet_annotations = annotations
    return render_devices(devices)


def render_pending(fleet: Fleet, tv: TemplateVersion) -> int:
    """Render dispatched devices that have not rendered ``tv`` yet, as the budget allows."""
    pending = _members(fleet).filter(_on_tv(tv.name)).exclude(
        annotations__contains={keys.RENDERED_TEMPLATE_VERSION: tv.name})
    budget = ((fleet.spec or {}).get("rolloutPolicy") or {}).get("disruptionBudget")
    rendered = 0
    with transaction.atomic():
        if not budget:
            while True:
                page = list(pending.select_for_update().order_by("pk")[:PAGE])
                if not page:
                    break
                rendered += _render(page, fleet)
                if len(page) < PAGE:
                    break
            return rendered
        group_by = budget.get("groupBy") or []
        groups: dict[tuple, dict] = {}
        pending_ids = set(pending.values_list("pk", flat=True))
        for device in _members(fleet).select_for_update().only(
                "pk", "org_id", "name", "labels", "status", "rendered_version", "rendered_hash",
                "rendered_spec", "spec", "annotations", "service_conditions", "summary_status"):
            key = tuple((device.labels or {}).get(k) for k in group_by)
            group = groups.setdefault(key, {"total": 0, "connected": 0, "busy": 0, "todo": []})
            group["total"] += 1
            if device.summary_status != "Unknown":
                group["connected"] += 1
                group["busy"] += _busy(device)
            if device.pk in pending_ids:
                group["todo"].append(device)
        selected = []
        for group in groups.values():
            allowed = math.inf
            if budget.get("maxUnavailable"):
                allowed = budget["maxUnavailable"] - group["busy"]
            if budget.get("minAvailable"):
                available = group["connected"] - group["busy"]
                allowed = min(allowed, available - min(budget["minAvailable"],
                                                       group["total"] - 1))
            if allowed > 0:
                selected.extend(group["todo"][: int(min(allowed, len(group["todo"])))])
        rendered = _render(selected, fleet) if selected else 0
    return rendered


# -- batches ----------------------------------------------------------------------------------


def _policy(fleet: Fleet) -> dict:
    return (fleet.spec or {}).get("rolloutPolicy") or {}


def _sequence(fleet: Fleet) -> list[dict]:
    return ((_policy(fleet).get("deviceSelection") or {}).get("sequence")) or []


def _percent(value, default: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return int(value[:-1])
    return default


def batch_name(number: int, count: int) -> str:
    if number < 0:
        return "preliminary batch"
    if number >= count:
        return "final implicit batch"
    return f"batch {number + 1}"


def _threshold(fleet: Fleet, number: int) -> int:
    sequence = _sequence(fleet)
    default = _percent(_policy(fleet).get("successThreshold"), c.DEFAULT_SUCCESS_THRESHOLD)
    if 0 <= number < len(sequence):
        return _percent(sequence[number].get("successThreshold"), default)
    return default


def _digest(fleet: Fleet) -> str:
    selection = _policy(fleet).get("deviceSelection") or {}
    return hashlib.md5(json.dumps(selection, sort_keys=True).encode()).hexdigest()  # noqa: S324


def completion(fleet: Fleet, tv: TemplateVersion) -> dict:
    """Counts over the selected devices of the current batch, in one aggregate query.

    A selected device is complete when it rendered ``tv`` and then reported it (successful),
    failed to apply it (``Updating`` reason ``Error``) or let ``defaultUpdateTimeout`` pass
    (timed out) — or when ``tv`` could not be resolved for it at all (``lastRolloutError``,
    e.g. a label its template needs is missing): such a device can never render ``tv``, so it
    counts as failed. The reference leaves that batch incomplete and the rollout stalls for
    good (docs/fleets.md)."""
    timeout = parse_duration(_policy(fleet).get("defaultUpdateTimeout") or c.DEFAULT_UPDATE_TIMEOUT)
    deadline = timezone.now() - timedelta(seconds=timeout)
    rendered_tv = Q(annotations__contains={keys.RENDERED_TEMPLATE_VERSION: tv.name})
    # The agent reports its renderedVersion as a string; compare it with the column as text.
    successful = rendered_tv & Q(reported=Cast("rendered_version", TextField()))
    unresolved = Q(annotations__has_key=keys.LAST_ROLLOUT_ERROR)
    failed = (rendered_tv & ~successful & UPDATE_FAILED) | (~rendered_tv & unresolved)
    timed_out = rendered_tv & ~successful & ~UPDATE_FAILED & Q(rendered_at__lt=deadline)
    counts = (_members(fleet).filter(annotations__has_key=keys.SELECTED_FOR_ROLLOUT).order_by()
              .annotate(reported=Coalesce(KT("status__config__renderedVersion"), Value(""),
                                          output_field=TextField()))
              .aggregate(total=Count("id"), successful=Count("id", filter=successful),
                         failed=Count("id", filter=failed),
                         timedOut=Count("id", filter=timed_out)))
    counts["complete"] = counts["successful"] + counts["failed"] + counts["timedOut"]
    return counts


def _select(fleet: Fleet, tv: TemplateVersion, number: int) -> int:
    """Mark the devices of batch ``number`` (explicit or final implicit)."""
    sequence = _sequence(fleet)
    candidates = _members(fleet).exclude(_on_tv(tv.name))
    limit = None
    if number < len(sequence):
        batch = sequence[number]
        q = label_selector_object_q(batch.get("selector")) if batch.get("selector") else Q()
        if q is None:
            return 0
        in_batch = _members(fleet).filter(q)
        candidates = candidates.filter(q).exclude(summary_status="Unknown")
        raw = batch.get("limit")
        if isinstance(raw, int):
            limit = raw
        elif isinstance(raw, str) and raw != "100%":
            total = in_batch.count()
            done = in_batch.filter(_on_tv(tv.name)).count()
            limit = max(0, round(total * int(raw[:-1]) / 100) - done)
    ids = list(candidates.order_by("name").values_list("pk", flat=True)[:limit])
    if ids:
        bulk.merge_annotations(Device.objects.filter(pk__in=ids),
                               {keys.SELECTED_FOR_ROLLOUT: ""})
    return len(ids)


def _unselect(fleet: Fleet) -> None:
    bulk.remove_annotation(_members(fleet).filter(
        annotations__has_key=keys.SELECTED_FOR_ROLLOUT), keys.SELECTED_FOR_ROLLOUT)


def in_explicit_batch(fleet: Fleet, tv: TemplateVersion) -> bool:
    """True while a batch rollout of ``tv`` has not reached its final implicit batch."""
    ann = fleet.annotations or {}
    if not _sequence(fleet) or ann.get(keys.DEPLOYING_TEMPLATE_VERSION) != tv.name:
        return False
    return int(ann.get(keys.BATCH_NUMBER, "-1")) < len(_sequence(fleet))


def _save(fleet: Fleet) -> None:
    Fleet.objects.filter(pk=fleet.pk).update(annotations=fleet.annotations, status=fleet.status)


def progress(fleet: Fleet) -> None:
    """Advance the fleet's rollout as far as it can go now (see the module docstring).

    A fleet without batches is only marked here: its caller runs :func:`dispatch_fleet`
    after committing."""
    tv = current_template_version(fleet)
    if tv is None:
        return
    fleet.annotations = dict(fleet.annotations or {})
    fleet.status = dict(fleet.status or {})
    ann, status = fleet.annotations, fleet.status
    if not _policy(fleet).get("deviceSelection"):
        if keys.BATCH_NUMBER in ann:
            for key in (keys.BATCH_NUMBER, keys.ROLLOUT_APPROVED, keys.DEPLOYING_TEMPLATE_VERSION,
                        keys.COMPLETION_REPORT):
                ann.pop(key, None)
            _unselect(fleet)
        # The devices are dispatched by dispatch_fleet once this transaction has committed.
        set_condition(status, ROLLOUT, False, c.RolloutReason.INACTIVE, INACTIVE)
        _save(fleet)
        return
    count = len(_sequence(fleet))
    if (ann.get(keys.DEPLOYING_TEMPLATE_VERSION) != tv.name
            or ann.get(keys.SELECTION_DIGEST) != _digest(fleet)):
        _unselect(fleet)
        ann.update({keys.DEPLOYING_TEMPLATE_VERSION: tv.name, keys.SELECTION_DIGEST: _digest(fleet),
                    keys.BATCH_NUMBER: "-1", keys.ROLLOUT_APPROVED: "false"})
        ann.setdefault(keys.APPROVAL_METHOD, c.ApprovalMethod.AUTOMATIC)
        ann.pop(keys.COMPLETION_REPORT, None)
        ann.pop(keys.REPORTED_BATCH, None)
    try:
        _walk(fleet, tv, count)
    finally:
        _save(fleet)
    render_pending(fleet, tv)


def _walk(fleet: Fleet, tv: TemplateVersion, count: int) -> None:
    ann, status = fleet.annotations, fleet.status
    for _ in range(count + 3):  # each pass moves at most one batch
        number = int(ann.get(keys.BATCH_NUMBER, "-1"))
        name = batch_name(number, count)
        if number > count:
            set_condition(status, ROLLOUT, False, c.RolloutReason.INACTIVE, INACTIVE)
            return
        if ann.get(keys.ROLLOUT_PAUSED) == "true":
            set_condition(status, ROLLOUT, False, c.RolloutReason.SUSPENDED,
                          f"Rollout is paused at {name}")
            return
        if ann.get(keys.ROLLOUT_APPROVED) != "true":
            if not _may_approve(fleet, number):
                _suspend(fleet, number, count)
                return
            ann[keys.ROLLOUT_APPROVED] = "true"
        selected = _members(fleet).filter(annotations__has_key=keys.SELECTED_FOR_ROLLOUT)
        not_dispatched = selected.exclude(_on_tv(tv.name))
        if not_dispatched.exists():
            set_condition(status, ROLLOUT, True, c.RolloutReason.ACTIVE,
                          f"Rolling out {name}")
            _event(fleet, "FleetRolloutBatchDispatched",
                   f"Fleet rollout {name} of template version {tv.name} was dispatched.",
                   {"detailType": "FleetRolloutBatchDispatched", "templateVersion": tv.name,
                    "batch": name})
            dispatch(fleet, tv, not_dispatched)
        counts = completion(fleet, tv)
        if counts["complete"] < counts["total"]:
            set_condition(status, ROLLOUT, True, c.RolloutReason.ACTIVE, f"Rolling out {name}")
            return
        if number >= 0 and ann.get(keys.REPORTED_BATCH) != str(number):
            _report(fleet, tv, number, count, counts)
        _advance(fleet, tv, number, count)


def _may_approve(fleet: Fleet, number: int) -> bool:
    ann = fleet.annotations
    if number < 0:
        return True
    if ann.get(keys.APPROVAL_METHOD) == c.ApprovalMethod.MANUAL:
        return False
    report = json.loads(ann.get(keys.COMPLETION_REPORT) or "null")
    return report is None or report["successPercentage"] >= _threshold(fleet, number - 1)


def _suspend(fleet: Fleet, number: int, count: int) -> None:
    ann, status = fleet.annotations, fleet.status
    name = batch_name(number, count)
    report = json.loads(ann.get(keys.COMPLETION_REPORT) or "null")
    if ann.get(keys.APPROVAL_METHOD) == c.ApprovalMethod.MANUAL and (
            report is None or report["successPercentage"] >= _threshold(fleet, number - 1)):
        set_condition(status, ROLLOUT, False, c.RolloutReason.WAITING,
                      f"Waiting for {name} to be approved")
        return
    message = (
        f"{report['batchName']} failed: {report['successPercentage']}% of devices were updated "
        f"successfully, success threshold was set to {_threshold(fleet, number - 1)}%; "
        f"Breakdown: total={report['total']} successful={report['successful']} "
        f"failed={report['failed']} timed out={report['timedOut']}"
    )
    if set_condition(status, ROLLOUT, False, c.RolloutReason.SUSPENDED, message):
        _event(fleet, "FleetRolloutFailed", message,
               {"detailType": "FleetRolloutFailed",
                "templateVersion": ann.get(keys.DEPLOYING_TEMPLATE_VERSION)},
               "Warning")


def _report(fleet: Fleet, tv: TemplateVersion, number: int, count: int, counts: dict) -> None:
    ann = fleet.annotations
    name = batch_name(number, count)
    total = counts["total"]
    percentage = counts["successful"] * 100 // total if total else 100
    report = {"batchName": name, "successPercentage": percentage, "total": total,
              "successful": counts["successful"], "failed": counts["failed"],
              "timedOut": counts["timedOut"]}
    ann[keys.COMPLETION_REPORT] = json.dumps(report)
    ann[keys.REPORTED_BATCH] = str(number)
    _event(fleet, "FleetRolloutBatchCompleted",
           f"Fleet rollout {name} of template version {tv.name} completed: {percentage}% "
           "successful.",
           {"detailType": "FleetRolloutBatchCompleted", "templateVersion": tv.name,
            "batch": name, **report})
    if number >= count:
        _event(fleet, "FleetRolloutCompleted",
               f"Fleet rollout of template version {tv.name} completed.",
               {"detailType": "FleetRolloutCompleted", "templateVersion": tv.name})


def _advance(fleet: Fleet, tv: TemplateVersion, number: int, count: int) -> None:
    ann = fleet.annotations
    _unselect(fleet)
    number += 1
    ann[keys.BATCH_NUMBER] = str(number)
    ann[keys.ROLLOUT_APPROVED] = "false"
    if number <= count:
        _select(fleet, tv, number)
    fleet.status.setdefault("rollout", {})["currentBatch"] = max(number, 0)


# -- operator actions -------------------------------------------------------------------------


def pause(fleet: Fleet) -> None:
    fleet.annotations = {**(fleet.annotations or {}), keys.ROLLOUT_PAUSED: "true"}
    fleet.status = dict(fleet.status or {})
    set_condition(fleet.status, ROLLOUT, False, c.RolloutReason.SUSPENDED, "Rollout is paused")
    _save(fleet)


def resume(fleet: Fleet) -> None:
    fleet.annotations = {k: v for k, v in (fleet.annotations or {}).items()
                         if k != keys.ROLLOUT_PAUSED}
    _save(fleet)


def approve(fleet: Fleet) -> None:
    fleet.annotations = {**(fleet.annotations or {}), keys.ROLLOUT_APPROVED: "true"}
    _save(fleet)


def set_approval_method(fleet: Fleet, method: str) -> None:
    fleet.annotations = {**(fleet.annotations or {}), keys.APPROVAL_METHOD: method}
    _save(fleet)


OPERATOR_ACTIONS = {"pause": pause, "resume": resume, "approve": approve}


def operator_action(org_id, name: str, action: str) -> Fleet:
    """``pause``, ``resume`` or ``approve`` the rollout of fleet ``name`` (the user API's
    ``POST .../rollout/{action}`` and the web console): the fleet is locked, the action applied
    and the rollout nudged (``fleet-progress``) in one transaction. ApiError if refused."""
    if action not in OPERATOR_ACTIONS:
        raise not_found("rollout action", action)
    with transaction.atomic():
        fleet = Fleet.objects.restrict(org_id).filter(name=name).select_for_update().first()
        if fleet is None:
            raise not_found("Fleet", name)
        if not (fleet.annotations or {}).get(keys.TEMPLATE_VERSION):
            raise bad_request(f'fleet "{name}" has no rollout yet')
        OPERATOR_ACTIONS[action](fleet)
        enqueue("fleet-progress", {"org_id": str(fleet.org_id), "name": fleet.name,
                                   "kind": "Fleet"})
    return fleet


def operator_approval_method(org_id, name: str, method: str) -> Fleet:
    """``PUT .../rollout/approvalmethod``: ``manual`` makes every batch wait for ``approve``."""
    if method not in c.ApprovalMethod.values:
        raise bad_request('method: Unsupported value: supported values: "automatic", "manual"')
    with transaction.atomic():
        fleet = Fleet.objects.restrict(org_id).filter(name=name).select_for_update().first()
        if fleet is None:
            raise not_found("Fleet", name)
        set_approval_method(fleet, method)
    return fleet
