"""Fleets: the list with device counts and rollout status, the fleet page (selector, template,
template versions and their diffs, the rollout and its controls) and the YAML editor."""

from __future__ import annotations

import difflib

import yaml
from django.http import Http404
from django.views.decorators.http import require_POST

from fleets import rollout
from fleets.api.views import FleetViewSet
from fleets.progress import (
    batch_devices,
    completion_report,
    explain,
    fleet_counts,
    member_counts,
    rollout_state,
    template_versions,
)
from flightctl.api import annotations as keys
from flightctl.api.conditions import get_condition
from flightctl.api.errors import ApiError
from flightctl.models import Event
from ui import access
from ui.views.common import (
    done,
    endpoint,
    found,
    keyset_page,
    refused,
    render,
    selected,
    to_yaml,
)
from ui.views.yaml_edit import edit_resource

ROLLOUT_ACTIONS = ("pause", "resume", "approve")


def fleet_list(request):
    access.require(request, "fleets", "list")
    view = endpoint(request, FleetViewSet)
    queryset, error = selected(request, view, view.get_queryset())
    rows, next_token, page_error = keyset_page(request, view, queryset)
    counts = member_counts(view.org_id, [fleet.name for fleet in rows])
    for fleet in rows:
        fleet.counts = counts[fleet.name]
        fleet.rollout = get_condition(fleet.status, "RolloutInProgress") or {}
        fleet.valid = get_condition(fleet.status, "Valid") or {}
        fleet.template_version = (fleet.annotations or {}).get(keys.TEMPLATE_VERSION, "")
    return render(request, "ui/fleet_list.html", {
        "fleets": rows, "error": error or page_error, "next_token": next_token,
        "label_selector": request.GET.get("labelSelector", ""),
        "field_selector": request.GET.get("fieldSelector", ""),
        "can_create": access.can(request, "fleets", "create"),
    }, title="Fleets")


def fleet_page(request, name: str):
    access.require(request, "fleets", "get")
    view = endpoint(request, FleetViewSet)
    fleet = found(view, name)
    spec = fleet.spec or {}
    counts = fleet_counts(fleet)
    versions = template_versions(fleet)
    diff = _diff(request, versions)
    state = rollout_state(fleet, counts["batch"])
    members = batch_devices(fleet)
    for device in members:
        device.why = explain(device, fleet)
    return render(request, "ui/fleet.html", {
        "fleet": fleet, "counts": counts["members"], "matching": counts["matching"],
        "selector_yaml": to_yaml(spec.get("selector")),
        "template_yaml": to_yaml(spec.get("template")),
        "policy_yaml": to_yaml(spec.get("rolloutPolicy")),
        "versions": versions, "diff": diff, "rollout": state, "batch_devices": members,
        "report": completion_report(fleet),
        "conditions": (fleet.status or {}).get("conditions") or [],
        "events": list(Event.objects.restrict(fleet.org_id).filter(
            involved_kind="Fleet", involved_name=name).order_by("-created_at", "-name")[:20]),
        "can_edit": access.can(request, "fleets", "update") and not fleet.owner,
        "can_control": access.can(request, "fleets/rollout", "create")
        and bool(state["templateVersion"]),
    }, title=f"Fleet {name}")


def _diff(request, versions) -> dict | None:
    """The unified diff of two TemplateVersions' templates (``?from=v1&to=v2``; by default
    the newest against the one before it)."""
    if len(versions) < 2:
        return None
    by_name = {tv.name: tv for tv in versions}
    new = by_name.get(request.GET.get("to")) or versions[0]
    old = by_name.get(request.GET.get("from")) or versions[1]
    lines = difflib.unified_diff(
        yaml.safe_dump(old.status, sort_keys=True).splitlines(),
        yaml.safe_dump(new.status, sort_keys=True).splitlines(),
        fromfile=old.name, tofile=new.name, lineterm="")
    return {"from": old.name, "to": new.name, "lines": list(lines)}


def fleet_edit(request, name: str | None = None):
    return edit_resource(request, FleetViewSet, name, resource="fleets", kind="Fleet",
                         page="admin:ui-fleet", title="fleet", example=EXAMPLE)


@require_POST
def rollout_action(request, name: str, action: str):
    if action not in ROLLOUT_ACTIONS + ("manual", "automatic"):
        raise Http404(f"no such rollout action {action!r}")
    if action in ROLLOUT_ACTIONS:  # the API's POST .../rollout/{action}
        access.require(request, f"fleets/rollout/{action}", "create")
    else:  # PUT .../rollout/approvalmethod
        access.require(request, "fleets/rollout/approvalmethod", "update")
    org = access.org_id(request)
    try:
        if action in ROLLOUT_ACTIONS:
            rollout.operator_action(org, name, action)
        else:
            rollout.operator_approval_method(org, name, action)
    except ApiError as exc:
        return refused(request, exc, "admin:ui-fleet", name)
    return done(request, f"Rollout: {action}.", "admin:ui-fleet", name)


EXAMPLE = """apiVersion: flightctl.io/v1beta1
kind: Fleet
metadata:
  name: my-fleet
spec:
  selector:
    matchLabels:
      fleet: my-fleet
  template:
    metadata:
      labels:
        fleet: my-fleet
    spec:
      os:
        image: quay.io/example/os:1.0
"""
