"""Devices: the list (selectors, keyset pages, bulk actions), the device page (status cards,
applications, conditions, specs, labels, events and why it is not at its target) and its
console (a terminal in the browser)."""

from __future__ import annotations

from urllib.parse import quote

from django.db import transaction
from django.db.models.fields.json import KT
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from devices import lifecycle
from devices.api.views import DeviceViewSet
from devices.health import resume_devices
from fleets.models import Fleet
from fleets.progress import explain
from flightctl.api.errors import ApiError, bad_request
from flightctl.api.events import actor_of
from flightctl.models import DEFAULT_ORG_ID, Event
from ui import access
from ui.views.common import (
    done,
    endpoint,
    found,
    keyset_page,
    parse_labels,
    refused,
    render,
    selected,
    to_yaml,
)

#: columns of the list (everything else of a device row stays in the database)
LIST_COLUMNS = ("name", "alias", "owner", "labels", "last_seen", "summary_status",
                "updated_status", "apps_status", "org_id")
#: bulk actions: form value -> (label, API resource, verb)
BULK_ACTIONS = {
    "labels": ("Add labels", "devices", "update"),
    "decommission": ("Decommission", "devices/decommission", "update"),
    "resume": ("Resume", "devices/resume", "create"),
}


def device_list(request):
    access.require(request, "devices", "list")
    if request.method == "POST":
        return _bulk(request)
    view = endpoint(request, DeviceViewSet)
    queryset, error = selected(request, view, view.get_queryset())
    rows, next_token, page_error = keyset_page(
        request, view, queryset.only(*LIST_COLUMNS).annotate(os_image=KT("status__os__image")))
    return render(request, "ui/device_list.html", {
        "devices": rows, "error": error or page_error, "next_token": next_token,
        "label_selector": request.GET.get("labelSelector", ""),
        "field_selector": request.GET.get("fieldSelector", ""),
        "bulk_actions": [(key, label) for key, (label, resource, verb) in BULK_ACTIONS.items()
                         if access.can(request, resource, verb)],
    }, title="Devices")


def _bulk(request):
    action = request.POST.get("action", "")
    names = request.POST.getlist("names")
    back = request.POST.get("back") or reverse("admin:ui-devices")
    if action not in BULK_ACTIONS:
        raise Http404(f"no such action {action!r}")
    _, resource, verb = BULK_ACTIONS[action]
    access.require(request, resource, verb)
    if not names:
        return _back(request, back, "Select at least one device.", error=True)
    try:
        with transaction.atomic():  # all of them or none
            count = apply(request, action, names, request.POST)
    except (ApiError, ValueError) as exc:
        return _back(request, back, getattr(exc, "message", str(exc)), error=True)
    return _back(request, back, f"{BULK_ACTIONS[action][0]}: {count} device(s).")


def _back(request, url: str, message: str, *, error: bool = False):
    from django.contrib import messages
    from django.utils.http import url_has_allowed_host_and_scheme

    (messages.error if error else messages.success)(request, message)
    if not url_has_allowed_host_and_scheme(url, {request.get_host()}):
        url = reverse("admin:ui-devices")
    return redirect(url)


def apply(request, action: str, names: list[str], form) -> int:
    """Run ``action`` on the named devices through the API's own code paths (validation,
    events with the user as actor, follow-up tasks); the caller holds the transaction."""
    view = endpoint(request, DeviceViewSet)
    if action == "resume":
        return resume_devices(view.get_queryset().filter(name__in=names),
                              actor=actor_of(request.user))
    if action == "decommission":
        for name in names:
            lifecycle.decommission_device(view.get_object(name, lock=True), "Unenroll",
                                          actor=actor_of(request.user))
        return len(names)
    labels = parse_labels(form.get("labels", ""))
    if not labels and form.get("replace") != "true":
        raise bad_request("labels: Required value: give at least one key=value")
    # One API write per device, as `flightctl` would send them: each is validated, versioned
    # and recorded on its own. The selection is bounded by the page (50 devices).
    for name in names:
        document = view.represent(view.get_object(name))
        merged = {**document["metadata"].get("labels", {}), **labels}
        if form.get("replace") == "true":
            merged = labels
            if form.get("resourceVersion"):
                document["metadata"]["resourceVersion"] = form["resourceVersion"]
        document["metadata"]["labels"] = merged
        view.replace_object(name, document)
    return len(names)


def device_page(request, name: str):
    access.require(request, "devices", "get")
    view = endpoint(request, DeviceViewSet)
    device = found(view, name)
    fleet = None
    if (device.owner or "").startswith("Fleet/"):
        fleet = Fleet.objects.restrict(device.org_id).filter(
            name=device.owner.removeprefix("Fleet/")).first()
    body = view.represent(device)
    status = body["status"]
    events = list(Event.objects.restrict(device.org_id).filter(
        involved_kind="Device", involved_name=name).order_by("-created_at", "-name")[:30])
    return render(request, "ui/device.html", {
        "device": device, "body": body, "status": status, "fleet": fleet,
        "why": explain(device, fleet), "events": events,
        "resources": status.get("resources") or {},
        "applications": status.get("applications") or [],
        "conditions": status.get("conditions") or [],
        "system_info": status.get("systemInfo") or {},
        "labels_text": "\n".join(f"{k}={v}" for k, v in (device.labels or {}).items()),
        "spec_yaml": to_yaml(device.spec), "rendered_yaml": to_yaml(device.rendered_spec),
        "can_label": access.can(request, "devices", "update"),
        "can_decommission": access.can(request, "devices/decommission", "update")
        and not (device.spec or {}).get("decommissioning"),
        "can_resume": access.can(request, "devices/resume", "create")
        and status.get("summary", {}).get("status") == "ConflictPaused",
        "can_console": access.can(request, "devices/console", "get"),
    }, title=f"Device {device.alias or device.name}")


def device_console(request, name: str):
    """A terminal on the device (ui/static/ui/terminal.js): the browser opens the user API's
    console WebSocket itself, with this session's cookie. The page does not pre-judge: the
    WebSocket's gate (role ``devices/console``, the device's state) answers, and the page
    shows its refusal."""
    access.require(request, "devices", "get")
    device = found(endpoint(request, DeviceViewSet), name)
    org_id = access.org_id(request)
    return render(request, "ui/device_console.html", {
        # As the CLI: ``org_id`` only for an organization other than the default.
        "device": device, "org_id": "" if org_id == DEFAULT_ORG_ID else org_id,
        "socket_path": f"/ws/v1/devices/{quote(device.name, safe='')}/console",
    }, title=f"Console of {device.alias or device.name}")


@require_POST
def device_action(request, name: str, action: str):
    if action not in BULK_ACTIONS:
        raise Http404(f"no such action {action!r}")
    _, resource, verb = BULK_ACTIONS[action]
    access.require(request, resource, verb)
    form = request.POST.copy()
    if action == "labels":
        form["replace"] = "true"  # the page edits the whole label set
    try:
        with transaction.atomic():
            apply(request, action, [name], form)
    except (ApiError, ValueError) as exc:
        if isinstance(exc, ValueError):
            exc = bad_request(f"labels: {exc}")
        return refused(request, exc, "admin:ui-device", name)
    return done(request, f"{BULK_ACTIONS[action][0]}: done.", "admin:ui-device", name)
