"""Where a rollout stands, and why a device is not at its target, in words for operators.

Both read what the rollout (fleets.rollout) and the device status computation (devices.health)
already keep — fleet and device annotations, conditions, the batch reports recorded as events —
and change nothing. Each costs a fixed number of queries whatever the fleet's size: the counts
are grouped SQL, the device lists bounded.
"""

from __future__ import annotations

import datetime
import json

from django.db.models import Count, Q
from django.utils import timezone

from devices.models import Device
from fleets import choices as c
from fleets.models import Fleet, TemplateVersion
from fleets.rollout import (
    ROLLOUT,
    UPDATE_FAILED,
    _percent,
    _policy,
    _sequence,
    _threshold,
    batch_name,
)
from flightctl.api import annotations as keys
from flightctl.api.conditions import find_condition, get_condition
from flightctl.api.selectors import label_selector_object_q
from flightctl.models import Event

FAILED = UPDATE_FAILED | Q(annotations__has_key=keys.LAST_ROLLOUT_ERROR)


def _member_aggregates(prefix: str = "", condition: Q | None = None) -> dict:
    """The counts of :func:`member_counts`, as aggregates over the rows ``condition`` picks.
    A failed device is OutOfDate; that cheap column is tested before the status document."""
    def only(q):
        return q if condition is None else condition & q
    return {f"{prefix}total": Count("id", filter=condition),
            f"{prefix}upToDate": Count("id", filter=only(Q(updated_status="UpToDate"))),
            f"{prefix}updating": Count("id", filter=only(Q(updated_status="Updating"))),
            f"{prefix}failed": Count("id", filter=only(Q(updated_status="OutOfDate") & FAILED))}


def member_counts(org_id, names: list[str]) -> dict[str, dict]:
    """Per fleet in ``names``: its devices ``total``, ``upToDate``, ``updating`` and
    ``failed`` (a failed update or a template that could not be applied); one grouped query."""
    owners = {f"Fleet/{name}": name for name in names}
    counts = {name: {"total": 0, "upToDate": 0, "updating": 0, "failed": 0} for name in names}
    if not names:
        return counts
    rows = (Device.objects.restrict(org_id).filter(owner__in=owners).order_by()
            .values("owner").annotate(**_member_aggregates()))
    for row in rows:
        counts[owners[row.pop("owner")]] = row
    return counts


def rollout_state(fleet: Fleet, batch_counts: dict | None = None) -> dict:
    """The rollout of ``fleet``'s current TemplateVersion: its batches (definition, state, the
    report of each completed one), the threshold, paused or waiting; ``batch_counts`` (from
    :func:`fleet_counts`) are shown on the current batch."""
    ann = fleet.annotations or {}
    tv = ann.get(keys.TEMPLATE_VERSION) or ""
    sequence = _sequence(fleet)
    condition = get_condition(fleet.status, ROLLOUT) or {}
    state = {"templateVersion": tv, "batched": bool(sequence), "paused":
             ann.get(keys.ROLLOUT_PAUSED) == "true",
             "approvalMethod": ann.get(keys.APPROVAL_METHOD) or c.ApprovalMethod.AUTOMATIC,
             "condition": condition, "inProgress": condition.get("status") == "True",
             "waiting": condition.get("reason") in (c.RolloutReason.WAITING,
                                                    c.RolloutReason.SUSPENDED),
             "successThreshold": _percent(_policy(fleet).get("successThreshold"),
                                          c.DEFAULT_SUCCESS_THRESHOLD),
             "batches": [], "current": None}
    if not sequence or not tv:
        return state
    deploying = ann.get(keys.DEPLOYING_TEMPLATE_VERSION) == tv
    number = int(ann.get(keys.BATCH_NUMBER, "-1")) if deploying else -1
    reports = {}
    events = (Event.objects.restrict(fleet.org_id)
              .filter(involved_kind="Fleet", involved_name=fleet.name,
                      reason="FleetRolloutBatchCompleted",
                      details__contains={"templateVersion": tv})
              .order_by("-created_at")[:len(sequence) + 1])
    for event in events:
        reports.setdefault(event.details.get("batch"), event.details)
    for index in range(len(sequence) + 1):
        definition = sequence[index] if index < len(sequence) else {}
        name = batch_name(index, len(sequence))
        phase = ("done" if index < number or number > len(sequence)
                 else "current" if index == number else "pending")
        state["batches"].append({
            "number": index + 1, "name": name, "phase": phase,
            "selector": definition.get("selector"), "limit": definition.get("limit"),
            "successThreshold": _threshold(fleet, index), "report": reports.get(name)})
    if 0 <= number <= len(sequence):
        state["current"] = state["batches"][number]
        state["current"]["counts"] = batch_counts
    state["finished"] = number > len(sequence)
    state["approved"] = ann.get(keys.ROLLOUT_APPROVED) == "true"
    return state


def fleet_counts(fleet: Fleet) -> dict:
    """Everything the fleet page counts, in one pass over the devices the fleet owns or its
    selector matches: ``members`` (as :func:`member_counts`), ``matching`` (devices its
    selector matches now, owned or not) and ``batch`` (the current batch by progress)."""
    owned = Q(owner=f"Fleet/{fleet.name}")
    selector = label_selector_object_q((fleet.spec or {}).get("selector"))
    tv = (fleet.annotations or {}).get(keys.TEMPLATE_VERSION) or ""
    on_tv = Q(annotations__contains={keys.RENDERED_TEMPLATE_VERSION: tv})
    batch = owned & Q(annotations__has_key=keys.SELECTED_FOR_ROLLOUT)
    aggregates = {
        **_member_aggregates("members_", owned),
        "batch_total": Count("id", filter=batch),
        "batch_dispatched": Count("id", filter=batch & Q(
            annotations__contains={keys.TEMPLATE_VERSION: tv})),
        "batch_rendered": Count("id", filter=batch & on_tv),
        "batch_successful": Count("id", filter=batch & on_tv & Q(updated_status="UpToDate")),
        "batch_failed": Count("id", filter=batch & Q(updated_status="OutOfDate") & FAILED),
    }
    if selector is not None:
        aggregates["matching"] = Count("id", filter=selector)
    rows = Device.objects.restrict(fleet.org_id).filter(
        owned | selector if selector is not None else owned).aggregate(**aggregates)
    result: dict = {"members": {}, "batch": {}, "matching": rows.pop("matching", 0)}
    for key, value in rows.items():
        group, _, name = key.partition("_")
        result[group][name] = value
    return result


def batch_devices(fleet: Fleet, limit: int = 50):
    """The devices of the current batch (all members not yet updated, without batches)."""
    members = Device.objects.restrict(fleet.org_id).filter(owner=f"Fleet/{fleet.name}")
    if _sequence(fleet):
        members = members.filter(annotations__has_key=keys.SELECTED_FOR_ROLLOUT)
    else:
        members = members.exclude(updated_status="UpToDate")
    # Everything explain() reads, and no more (the specs stay in the database).
    return list(members.order_by("name").defer("spec", "rendered_spec")[:limit])


def explain(device: Device, fleet: Fleet | None, *, now: datetime.datetime | None = None
            ) -> dict:
    """Why ``device`` is (not) at its target, stated in words: ``atTarget``, the ``target``
    and ``current`` versions, and ``reasons`` (sentences, most important first).

    ``fleet`` is the owning fleet (None for a standalone device). The reasons follow the
    order in which a rollout reaches a device: the fleet's template, this device's spec
    (dispatch), its rendering (disruption budget), its agent applying it (update window,
    errors), and whether the device is there to take it at all (disconnected, paused).
    """
    now = now or timezone.now()
    status = device.status or {}
    ann = device.annotations or {}
    reported = str((status.get("config") or {}).get("renderedVersion") or "0")
    rendered = str(device.rendered_version or 0)
    updating = find_condition(status.get("conditions"), "Updating")
    reasons: list[str] = []
    result = {"atTarget": False, "reasons": reasons, "renderedVersion": rendered,
              "reportedVersion": reported, "lastUpdate": updating, "fleet": fleet.name
              if fleet else None, "target": None, "deviceTemplateVersion":
              ann.get(keys.TEMPLATE_VERSION),
              "renderedTemplateVersion": ann.get(keys.RENDERED_TEMPLATE_VERSION)}

    lifecycle = (status.get("lifecycle") or {}).get("status")
    if lifecycle in ("Decommissioning", "Decommissioned"):
        reasons.append(f"The device is {lifecycle.lower()}: it takes no further updates.")
        return result
    summary = (status.get("summary") or {})
    if summary.get("status") == "ConflictPaused":
        reasons.append("Reconciliation is paused: the device runs a newer spec than the restored "
                       "service knows. Resume the device to continue.")
    elif summary.get("status") == "AwaitingReconnect":
        reasons.append("The device has not reconnected since the service was restored; "
                       "nothing is sent to it until it does.")
    elif summary.get("status") == "Unknown":
        seen = (f"last seen {_ago(now - device.last_seen)} ago" if device.last_seen
                else "it has never reported")
        reasons.append(f"The device is disconnected ({seen}): it picks up its new spec when "
                       "it connects again.")

    if fleet is not None:
        target = (fleet.annotations or {}).get(keys.TEMPLATE_VERSION)
        result["target"] = target
        valid = get_condition(fleet.status, "Valid") or {}
        if not target:
            reasons.insert(0, "The fleet has no valid template version yet"
                           + (f": {valid.get('message')}" if valid.get("status") == "False"
                              else "."))
            return result
        if valid.get("status") == "False":
            reasons.append(f"The fleet's newest template is invalid and was not rolled out "
                           f"({valid.get('message')}); its devices keep {target}.")
        error = ann.get(keys.LAST_ROLLOUT_ERROR)
        if error:
            reasons.insert(0, f"The fleet's template {target} could not be applied to this "
                              f"device: {error}")
        elif ann.get(keys.TEMPLATE_VERSION) != target:
            reasons.insert(0, _not_dispatched(fleet, device, target))
        elif ann.get(keys.RENDERED_TEMPLATE_VERSION) != target:
            budget = _policy(fleet).get("disruptionBudget")
            reasons.insert(0, "The device's new spec waits for the fleet's disruption budget "
                           f"({_budget(budget)})." if budget else
                           "The device's new spec is waiting to be rendered.")
    result["updated"] = (status.get("updated") or {})
    _agent_reasons(device, status, updating, reported, rendered, reasons)
    result["atTarget"] = not reasons
    if not reasons:
        target = f" from template version {result['target']}" if result["target"] else ""
        reasons.append(f"The device runs its target: rendered version {rendered}{target}.")
    return result


def _not_dispatched(fleet: Fleet, device: Device, target: str) -> str:
    ann = fleet.annotations or {}
    sequence = _sequence(fleet)
    if not sequence:
        return f"The fleet's rollout of {target} has not reached this device yet."
    number = int(ann.get(keys.BATCH_NUMBER, "-1"))
    name = batch_name(number, len(sequence))
    if ann.get(keys.ROLLOUT_PAUSED) == "true":
        return f"The fleet's rollout of {target} is paused at {name}; resume it to continue."
    condition = get_condition(fleet.status, ROLLOUT) or {}
    selected = keys.SELECTED_FOR_ROLLOUT in (device.annotations or {})
    if selected and condition.get("reason") == c.RolloutReason.WAITING:
        return f"The device is in {name} of the rollout of {target}, which waits for approval."
    if condition.get("reason") == c.RolloutReason.SUSPENDED and not selected:
        return (f"The rollout of {target} is suspended ({condition.get('message')}); the device "
                "is in a later batch.")
    if not selected:
        return (f"The device is outside the current rollout batch ({name}) of {target}: it is "
                "updated in a later batch.")
    return f"The device is in {name} of the rollout of {target}, about to be dispatched."


def _agent_reasons(device: Device, status: dict, updating, reported: str, rendered: str,
                   reasons: list[str]) -> None:
    """What the agent says about applying the rendered version."""
    if device.rendered_version == 0:
        if not reasons:
            reasons.append("Nothing has been rendered for the device yet.")
        return
    if updating and updating.get("status") == "True":
        reasons.append(f"The device is applying rendered version {rendered} "
                       f"({updating.get('reason') or 'Updating'}"
                       + (f": {updating['message']}" if updating.get("message") else "") + ").")
        return
    if updating and updating.get("reason") == "Error":
        reasons.append(f"The last update attempt failed: {updating.get('message') or 'error'}")
        return
    for condition in (device.service_conditions or []) + (status.get("conditions") or []):
        if condition.get("type") == "SpecValid" and condition.get("status") == "False":
            reasons.append(f"The device's spec is invalid: {condition.get('message')}")
            return
    if reported != rendered:
        policy = (_rendered(device).get("updatePolicy") or {})
        window = policy.get("updateSchedule") or policy.get("downloadSchedule")
        if window:
            reasons.append(f"The device applies updates only in its update window "
                           f"({window.get('at')} {window.get('timeZone') or 'Local'}); it "
                           f"runs version {reported}, version {rendered} waits for it.")
        else:
            reasons.append(f"The device has not yet reported running rendered version "
                           f"{rendered} (it reports {reported}).")
        return
    wanted = (_rendered(device).get("os") or {}).get("image")
    running = (status.get("os") or {}).get("image")
    if wanted and running and wanted != running:
        reasons.append(f"The device runs OS image {running}, not {wanted}.")


def _rendered(device: Device) -> dict:
    """The rendered spec; empty when the caller did not load it (lists of devices)."""
    if "rendered_spec" in device.get_deferred_fields():
        return {}
    return device.rendered_spec or {}


def _budget(budget: dict) -> str:
    parts = []
    if budget.get("maxUnavailable"):
        parts.append(f"at most {budget['maxUnavailable']} updating at once")
    if budget.get("minAvailable"):
        parts.append(f"at least {budget['minAvailable']} available")
    group = ", ".join(budget.get("groupBy") or [])
    return "; ".join(parts) + (f" per {group}" if group else "")


def _ago(delta: datetime.timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def template_versions(fleet: Fleet, limit: int = 20) -> list[TemplateVersion]:
    return list(TemplateVersion.objects.filter(fleet=fleet).order_by("-created_at", "-name")
                [:limit])


def completion_report(fleet: Fleet) -> dict | None:
    raw = (fleet.annotations or {}).get(keys.COMPLETION_REPORT)
    return json.loads(raw) if raw else None
