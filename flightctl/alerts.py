"""Alerts for Alertmanager, from the events devices' problems already leave (service.md §7.2).

Every ``alert_polling_interval`` (when ``alertmanager_url`` is set) the ``alert-exporter`` job
reads the events recorded since its last run and keeps, per resource, at most one active alert
per *group*:

=====================  =================================================  ====================
group                  raised by (the newest wins within the group)        resolved by
=====================  =================================================  ====================
connectivity           ``DeviceDisconnected``                              ``DeviceConnected``
applications           ``DeviceApplicationError``, ``...Degraded``          ``...Healthy``
cpu / memory / disk    ``Device<R>Critical``, ``Device<R>Warning``           ``Device<R>Normal``
=====================  =================================================  ====================

``ResourceDeleted`` and ``DeviceDecommissioned`` resolve every alert of the resource.

Each run posts every active alert (Alertmanager forgets alerts that are not re-sent) and every
alert resolved since, with its ``endsAt``, to ``POST /api/v2/alerts``. Labels: ``alertname``
(the reason), ``resource``, ``kind``, ``org_id``; annotation ``summary`` (the event's message).
The state lives in a :class:`flightctl.models.Checkpoint` row, updated in the run's transaction
under its lock; resolutions Alertmanager did not accept are sent again next run. Events
committed late (a transaction that began before the previous run read) are caught by reading
a minute back and skipping the events already seen (the same minute absorbs modest clock skew
between servers, whose clocks stamp the events).
"""

from __future__ import annotations

import datetime
import logging

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from flightctl.api.serializers import timestamp
from flightctl.models import Checkpoint, Event
from flightctl.tasks import periodic, setting_interval

log = logging.getLogger(__name__)

CONSUMER, KEY = "alert-exporter", "active-alerts"
OVERLAP = datetime.timedelta(seconds=60)
PAGE = 1000
RAISES = {
    "DeviceDisconnected": "connectivity",
    "DeviceApplicationError": "applications", "DeviceApplicationDegraded": "applications",
    "DeviceCPUCritical": "cpu", "DeviceCPUWarning": "cpu",
    "DeviceMemoryCritical": "memory", "DeviceMemoryWarning": "memory",
    "DeviceDiskCritical": "disk", "DeviceDiskWarning": "disk",
}
CLEARS = {"DeviceConnected": "connectivity", "DeviceApplicationHealthy": "applications",
          "DeviceCPUNormal": "cpu", "DeviceMemoryNormal": "memory", "DeviceDiskNormal": "disk"}
CLEARS_ALL = ("ResourceDeleted", "DeviceDecommissioned")
REASONS = (*RAISES, *CLEARS, *CLEARS_ALL)


def _iso(moment: datetime.datetime) -> str:
    return timestamp(moment.astimezone(datetime.UTC))


def _alert(key: str, entry: dict, ends_at: str | None = None) -> dict:
    org_id, kind, name = key.split(":", 2)
    alert = {"labels": {"alertname": entry["alertname"], "resource": name, "kind": kind,
                        "org_id": org_id},
             "annotations": {"summary": entry.get("summary", "")},
             "startsAt": entry["startsAt"]}
    if ends_at:
        alert["endsAt"] = ends_at
    return alert


def apply_event(state: dict, event: Event, now: str) -> None:
    """Fold one event into ``state`` (``alerts``: key → group → alert; ``resolved``: alerts to
    send as ended)."""
    key = f"{event.org_id}:{event.involved_kind}:{event.involved_name}"
    groups = state["alerts"].setdefault(key, {})
    ended = []
    if event.reason in CLEARS_ALL:
        ended = list(groups)
    elif event.reason in CLEARS:
        ended = [CLEARS[event.reason]] if CLEARS[event.reason] in groups else []
    elif event.reason in RAISES:
        group = RAISES[event.reason]
        current = groups.get(group)
        if current and current["alertname"] == event.reason:
            return  # already raised
        if current:
            ended = [group]  # replaced within its group: the old one ends
        state["resolved"] += [_alert(key, groups.pop(g), now) for g in ended]
        groups[group] = {"alertname": event.reason, "summary": event.message,
                         "startsAt": _iso(event.created_at)}
        return
    state["resolved"] += [_alert(key, groups.pop(g), now) for g in ended]
    if not groups:
        state["alerts"].pop(key, None)


def _post(url: str, alerts: list[dict]) -> bool:
    try:
        response = requests.post(f"{url.rstrip('/')}/api/v2/alerts", json=alerts, timeout=10)
    except requests.RequestException as exc:
        log.warning("Alertmanager at %s not reached: %s", url, exc)
        return False
    if not response.ok:
        log.warning("Alertmanager at %s answered %s", url, response.status_code)
    return response.ok


@periodic("alert-exporter", setting_interval("alert_polling_interval"))
def export_alerts() -> int:
    """One run of the exporter; returns how many alerts were sent (0 when disabled)."""
    url = settings.FLIGHTCTL.alertmanager_url
    if not url:
        return 0
    with transaction.atomic():
        checkpoint, _ = Checkpoint.objects.select_for_update().get_or_create(
            consumer=CONSUMER, key=KEY, defaults={"value": {}})
        state = {"alerts": {}, "resolved": [], "seen": [], **(checkpoint.value or {})}
        now = timezone.now()  # events are stamped by the servers' clocks, not the database's
        events = Event.objects.filter(reason__in=REASONS, created_at__lte=now)
        if state.get("since"):
            since = datetime.datetime.fromisoformat(state["since"])
            events = events.filter(created_at__gte=since - OVERLAP)
        seen = set(state["seen"])
        recent = []
        for event in events.order_by("created_at", "id").iterator(chunk_size=PAGE):
            if now - event.created_at <= OVERLAP:
                recent.append(event.pk)
            if event.pk in seen:
                continue
            apply_event(state, event, _iso(now))
        outgoing = [_alert(key, entry) for key, groups in state["alerts"].items()
                    for entry in groups.values()] + state["resolved"]
        if outgoing and _post(url, outgoing):
            state["resolved"] = []
        state["since"], state["seen"] = now.isoformat(), recent
        checkpoint.value = state
        checkpoint.save(update_fields=["value", "updated_at"])
    return len(outgoing)
