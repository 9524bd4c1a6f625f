"""``DevicesSummary``: counts of devices by summary, update, application status and OS mode.

Computed in SQL for whole collections, or from the rows already loaded for one page. The SQL
form is a single ``GROUP BY`` over the generated, indexed status columns (one row per distinct
combination), folded into the four breakdowns in Python; grouping by ``owner`` as well gives
every fleet of a list page its summary from that same single statement (api.md §4.4).
"""

from __future__ import annotations

from collections import Counter

from django.db.models import Count

from devices.models import Device

DIMENSIONS = {
    "applicationStatus": "apps_status",
    "summaryStatus": "summary_status",
    "updateStatus": "updated_status",
}
FLEET_OWNER_PREFIX = "Fleet/"


def empty_summary() -> dict:
    summary: dict = {"total": 0}
    for key in DIMENSIONS:
        summary[key] = {}
    summary["capabilities"] = {"osMode": {}}
    return summary


def _add(summary: dict, row: dict, count: int) -> None:
    summary["total"] += count
    for key, column in DIMENSIONS.items():
        value = row[column] or "Unknown"
        summary[key][value] = summary[key].get(value, 0) + count
    mode = row["os_mode"] or "unknown"
    modes = summary["capabilities"]["osMode"]
    modes[mode] = modes.get(mode, 0) + count


_COLUMNS = (*DIMENSIONS.values(), "os_mode")


def summarize_queryset(queryset) -> dict:
    """The summary of every device in ``queryset`` (one grouped query)."""
    summary = empty_summary()
    for row in queryset.order_by().values(*_COLUMNS).annotate(n=Count("id")):
        _add(summary, row, row["n"])
    return summary


def summarize_by_owner(queryset, owners: list[str]) -> dict[str, dict]:
    """The summary of the devices of each owner in ``owners`` (one grouped query for all of
    them, answered from the (org_id, owner) index); owners without devices get zeros."""
    summaries = {owner: empty_summary() for owner in owners}
    if not owners:
        return summaries
    rows = (queryset.filter(owner__in=owners).order_by().values("owner", *_COLUMNS)
            .annotate(n=Count("id")))
    for row in rows:
        _add(summaries[row["owner"]], row, row["n"])
    return summaries


def add_devices_summaries(org_id, fleets: list[dict]) -> None:
    """Set ``status.devicesSummary`` on each fleet representation in ``fleets`` (a list page
    or a single fleet) over its member devices (``owner = Fleet/<name>``)."""
    owners = [FLEET_OWNER_PREFIX + fleet["metadata"]["name"] for fleet in fleets]
    summaries = summarize_by_owner(Device.objects.restrict(org_id), owners)
    for fleet, owner in zip(fleets, owners, strict=True):
        fleet.setdefault("status", {})["devicesSummary"] = summaries[owner]


def summarize_rows(rows) -> dict:
    summary: dict = {"total": len(rows)}
    for key, column in DIMENSIONS.items():
        summary[key] = dict(Counter(getattr(row, column) or "Unknown" for row in rows))
    summary["capabilities"] = {
        "osMode": dict(Counter(row.os_mode or "unknown" for row in rows))
    }
    return summary
