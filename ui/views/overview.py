"""The overview: the fleet at a glance, each number a link to the devices behind it."""

from __future__ import annotations

from urllib.parse import urlencode

from django.db.models import Q
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from devices.choices import ApplicationsSummaryStatus, DeviceSummaryStatus, DeviceUpdatedStatus
from devices.models import Device
from enrollment.models import EnrollmentRequest
from fleets.models import Fleet
from fleets.progress import member_counts
from flightctl.models import Event
from ui import access, counts
from ui.views.common import bounded_count, render

#: (title, summary key, the field its values select, display order)
BREAKDOWNS = (
    ("Device status", "summaryStatus", "status.summary.status", DeviceSummaryStatus.values),
    ("Update status", "updateStatus", "status.updated.status", DeviceUpdatedStatus.values),
    ("Application status", "applicationStatus", "status.applicationsSummary.status",
     ApplicationsSummaryStatus.values),
)
#: status values that are a problem, for the colours and the alerts panel
PROBLEMS = {"Error", "Degraded", "Unknown", "OutOfDate", "ConflictPaused", "AwaitingReconnect"}
ALERTING = (Q(summary_status__in=["Error", "Degraded", "Unknown"])
            | Q(apps_status__in=["Error", "Degraded"]))


def devices_url(field: str, value: str) -> str:
    return reverse("admin:ui-devices") + "?" + urlencode({"fieldSelector": f"{field}={value}"})


def breakdowns(summary: dict) -> list[dict]:
    total = summary["total"] or 1
    charts = []
    for title, key, field, order in BREAKDOWNS:
        values = summary.get(key) or {}
        keys = [v for v in order if v in values] + sorted(set(values) - set(order))
        charts.append({"title": title, "bars": [
            {"label": value, "count": values[value], "percent": round(100 * values[value] / total),
             "url": devices_url(field, value), "problem": value in PROBLEMS} for value in keys]})
    return charts


def overview(request):
    access.require(request, "devices", "list")
    org = access.org_id(request)
    summary, age = counts.device_summary(org)
    rollouts = list(Fleet.objects.restrict(org).filter(
        Q(status__conditions__contains=[{"type": "RolloutInProgress", "status": "True"}])
        | Q(status__conditions__contains=[{"type": "RolloutInProgress", "reason": "Waiting"}])
        | Q(status__conditions__contains=[{"type": "RolloutInProgress", "reason": "Suspended"}])
    ).order_by("name").only("name", "status", "annotations")[:10])
    names = tuple(f.name for f in rollouts)
    progress, _ = counts.cached(("rollouts", org, names), lambda: member_counts(org, names))
    for fleet in rollouts:
        fleet.counts = progress[fleet.name]
        fleet.condition = next((x for x in fleet.status.get("conditions", [])
                                if x.get("type") == "RolloutInProgress"), {})
        total = fleet.counts["total"] or 1
        fleet.percent = round(100 * fleet.counts["upToDate"] / total)
    pending = EnrollmentRequest.objects.restrict(org).exclude(status__has_key="approval")
    summary_counts = summary.get("summaryStatus", {})
    apps_counts = summary.get("applicationStatus", {})
    alerts = [
        ("Disconnected", summary_counts.get("Unknown", 0),
         devices_url("status.summary.status", "Unknown")),
        ("Resources critical", summary_counts.get("Error", 0),
         devices_url("status.summary.status", "Error")),
        ("Resources degraded", summary_counts.get("Degraded", 0),
         devices_url("status.summary.status", "Degraded")),
        ("Applications failed", apps_counts.get("Error", 0),
         devices_url("status.applicationsSummary.status", "Error")),
        ("Applications degraded", apps_counts.get("Degraded", 0),
         devices_url("status.applicationsSummary.status", "Degraded")),
    ]
    return render(request, "ui/overview.html", {
        "summary": summary, "summary_age": round(age), "charts": breakdowns(summary),
        "rollouts": rollouts,
        "pending": list(pending.order_by("-created_at").only("name", "created_at", "spec")[:10]),
        "pending_count": bounded_count(pending),
        "alerts": alerts,
        "alerting": list(Device.objects.restrict(org).filter(ALERTING).order_by("name").only(
            "name", "alias", "summary_status", "apps_status", "last_seen")[:10]),
        "events": list(Event.objects.restrict(org).order_by("-created_at", "-name")[:15]),
    }, title="Overview")


@require_POST
def switch_organization(request):
    """The header's organization switch: work in the chosen one, starting at its overview
    (names differ between organizations, so the page shown before may not exist there)."""
    access.choose(request, request.POST.get("org", ""))
    return redirect("admin:index")
