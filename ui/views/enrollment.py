"""The enrollment waiting room: pending requests with their system info and TPM verification,
approved (with labels and an alias) or denied one or many at once, and each request's page —
where the agent's printed ``/enroll/<name>`` URL lands."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from devices.models import Device
from enrollment import services
from enrollment.api.views import EnrollmentRequestViewSet
from enrollment.choices import ConditionType
from flightctl.api.conditions import get_condition
from flightctl.api.errors import ApiError
from flightctl.api.events import actor_of
from flightctl.api.validation import Errors
from ui import access
from ui.views.common import endpoint, found, keyset_page, parse_labels, render, selected

APPROVAL = ("enrollmentrequests/approval", "update")


def _state(er) -> str:
    if services.is_true(er.status, ConditionType.APPROVED):
        return "Approved"
    if services.is_true(er.status, ConditionType.DENIED):
        return "Denied"
    return "Pending"


def _describe(er) -> None:
    """Attach what the pages show of a request: state, system info, TPM verification."""
    device_status = (er.spec or {}).get("deviceStatus") or {}
    er.state = _state(er)
    er.system_info = device_status.get("systemInfo") or {}
    er.tpm = get_condition(er.status, ConditionType.TPM_VERIFIED)
    er.requested_labels = (er.spec or {}).get("labels") or {}


@require_http_methods(["GET", "POST"])
def waiting_room(request):
    access.require(request, "enrollmentrequests", "list")
    if request.method == "POST":
        names = request.POST.getlist("names")
        return _decide(request, names, reverse("admin:ui-enrollment"))
    view = endpoint(request, EnrollmentRequestViewSet)
    queryset = view.get_queryset()
    show = request.GET.get("show", "pending")
    if show == "pending":
        queryset = queryset.exclude(status__has_key="approval")
    queryset, error = selected(request, view, queryset)
    rows, next_token, page_error = keyset_page(request, view, queryset.defer(
        "tpm_challenge_digest"))
    for er in rows:
        _describe(er)
    return render(request, "ui/enrollment.html", {
        "requests": rows, "error": error or page_error, "next_token": next_token,
        "show": show, "label_selector": request.GET.get("labelSelector", ""),
        "field_selector": request.GET.get("fieldSelector", ""),
        "can_approve": access.can(request, *APPROVAL),
    }, title="Enrollment requests")


@require_http_methods(["GET", "POST"])
def request_page(request, name: str):
    access.require(request, "enrollmentrequests", "get")
    if request.method == "POST":
        return _decide(request, [name], reverse("admin:ui-enrollmentrequest", args=[name]))
    er = found(endpoint(request, EnrollmentRequestViewSet), name)
    _describe(er)
    device = Device.objects.restrict(er.org_id).filter(name=name).only("name").first()
    return render(request, "ui/enrollmentrequest.html", {
        "er": er, "device": device, "approval": (er.status or {}).get("approval"),
        "conditions": (er.status or {}).get("conditions") or [],
        "can_approve": access.can(request, *APPROVAL) and er.state == "Pending",
    }, title=f"Enrollment request {name[:16]}")


def _decide(request, names: list[str], back: str):
    """Approve or deny ``names`` with the API's approval service (certificate, Device and
    events), all of them in one transaction: all or none."""
    from django.contrib import messages

    access.require(request, *APPROVAL)
    approve = request.POST.get("decision") == "approve"
    if not names:
        messages.error(request, "Select at least one enrollment request.")
        return redirect(back)
    try:
        labels = parse_labels(request.POST.get("labels", ""))
    except ValueError as exc:
        messages.error(request, f"labels: {exc}")
        return redirect(back)
    alias = request.POST.get("alias", "").strip()
    if alias:
        if len(names) > 1:
            messages.error(request, "An alias names one device: approve one request with it.")
            return redirect(back)
        labels["alias"] = alias
    errors = Errors()
    if labels and not errors.labels("labels", labels):
        messages.error(request, "\n".join(errors))
        return redirect(back)
    org = access.org_id(request)
    try:
        with transaction.atomic():
            for name in names:
                services.approve_enrollment_request(
                    org, name, {"approved": approve, "labels": labels},
                    username=request.user.get_username(), actor=actor_of(request.user))
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    verb = "Approved" if approve else "Denied"
    messages.success(request, f"{verb} {len(names)} enrollment request(s).")
    if approve and len(names) == 1:
        return redirect("admin:ui-device", names[0])
    return redirect(back)
