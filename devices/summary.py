"""``DevicesSummary``: counts of devices by summary, update, application status and OS mode.

Computed in SQL (``GROUP BY`` on generated, indexed columns) for whole collections, or from the
rows already loaded for one page.
"""

from __future__ import annotations

from collections import Counter

from django.db.models import Count

DIMENSIONS = {
    "applicationStatus": "apps_status",
    "summaryStatus": "summary_status",
    "updateStatus": "updated_status",
}


def summarize_queryset(queryset) -> dict:
    summary: dict = {"total": 0}
    for key, column in DIMENSIONS.items():
        rows = queryset.order_by().values(column).annotate(n=Count("id"))
        summary[key] = {row[column] or "Unknown": row["n"] for row in rows}
    summary["total"] = sum(summary["summaryStatus"].values())
    rows = queryset.order_by().values("os_mode").annotate(n=Count("id"))
    summary["capabilities"] = {"osMode": {row["os_mode"] or "unknown": row["n"] for row in rows}}
    return summary


def summarize_rows(rows) -> dict:
    summary: dict = {"total": len(rows)}
    for key, column in DIMENSIONS.items():
        summary[key] = dict(Counter(getattr(row, column) or "Unknown" for row in rows))
    summary["capabilities"] = {
        "osMode": dict(Counter(row.os_mode or "unknown" for row in rows))
    }
    return summary
