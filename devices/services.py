"""Device operations shared by the user API, the agent API and the task workers.

The agent API (enrollment app) calls these rather than touching Device rows itself, so the
rules for rendered specs, agent status and last-seen live in one place.
"""

from __future__ import annotations

import json
import threading
import time

from django.db import connection, transaction
from django.utils import timezone

from devices.models import Device
from devices.status import complete_status
from flightctl.api.errors import API_VERSION
from flightctl.compiled import CompiledLookup

#: PostgreSQL NOTIFY channel on which renders are announced; payload "<org_id>/<name>/<version>".
RENDER_CHANNEL = "flightctl_rendered"
RENDERED_VERSION_ANNOTATION = "device-controller/renderedVersion"
RENDER_BATCH = 1000  # devices per device-render-batch task


def rendered_device_body(device: Device) -> dict:
    """The Device as ``GET /devices/{name}/rendered`` returns it to its agent."""
    from devices.api.serializers import DeviceSerializer

    body = DeviceSerializer().to_representation(device)
    body["apiVersion"] = API_VERSION
    body["spec"] = device.rendered_spec or {}
    return body


#: a device as its agent's ``GET /rendered`` loads it
_FOR_RENDERED = CompiledLookup(lambda org_id, name: Device.objects.restrict(org_id).filter(
    name=name))


def load_rendered_body(org_id, name: str) -> dict | None:
    """:func:`rendered_device_body` of the named device, or None if there is none."""
    device = _FOR_RENDERED.first(org_id, name)
    return None if device is None else rendered_device_body(device)


def notify_rendered(device: Device) -> None:
    """Announce a new render; delivered at commit, so waiters never see an uncommitted spec."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, %s)",
            [RENDER_CHANNEL, f"{device.org_id}/{device.name}/{device.rendered_version}"],
        )


class LastSeenBuffer:
    """Last-seen times waiting to be written, flushed in one statement.

    Every agent call refreshes its device's last-seen time. Written one UPDATE per call, that is
    the agent API's most frequent database write (every long-poll, every status report); the
    agent API process therefore buffers them here and a flusher thread writes the whole buffer
    once a second with one ``UPDATE ... FROM unnest`` (the reference flushes every 15 s). A
    device is not written again within ``granularity`` seconds of its previous write from this
    process: connectivity is judged on a 5-minute scale, so rewriting the same row on every
    request only churns PostgreSQL (dead tuples, WAL) without changing any answer.
    """

    def __init__(self, granularity: float = 5.0):
        self.granularity = granularity
        self._pending: dict[tuple, object] = {}
        self._written: dict[tuple, float] = {}
        self._lock = threading.Lock()
        self.enabled = False

    def add(self, org_id, name: str) -> None:
        key = (str(org_id), name)
        now = time.monotonic()
        with self._lock:
            if now - self._written.get(key, -1e9) < self.granularity:
                return  # written moments ago: nothing a reader could tell apart
            self._written[key] = now
            self._pending[key] = timezone.now()

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
            if len(self._written) > 200_000:  # bound the memory of long-running processes
                cutoff = time.monotonic() - self.granularity
                self._written = {k: t for k, t in self._written.items() if t > cutoff}
        if not pending:
            return 0

        orgs, names = zip(*pending.keys(), strict=True)
        with transaction.atomic(), connection.cursor() as cursor:
            _relaxed_commit()
            # Raw SQL: the ORM has no UPDATE ... FROM. GREATEST keeps a newer time written
            # meanwhile by a status report (record_agent_status writes last_seen itself).
            # Rows locked by someone else are skipped, not waited for: a status report
            # writes last_seen itself, and waiting made reports queue behind this statement
            # and deadlocked with the adoption pass, which locks its page in id order.
            cursor.execute(
                """
                WITH v AS (
                    SELECT * FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[])
                        AS v(org, name, seen)
                ), free AS (
                    SELECT d.id, v.seen FROM devices_device AS d
                    JOIN v ON d.org_id = v.org AND d.name = v.name
                    ORDER BY d.id FOR UPDATE OF d SKIP LOCKED
                )
                UPDATE devices_device AS d SET last_seen = GREATEST(d.last_seen, free.seen)
                FROM free WHERE d.id = free.id
                """,
                [list(orgs), list(names), list(pending.values())],
            )
        return len(pending)

    def run_flusher(self, interval: float = 1.0) -> threading.Thread:
        """Turn batching on and flush every ``interval`` seconds in a daemon thread."""
        import logging

        log = logging.getLogger(__name__)
        self.enabled = True

        def loop():
            while True:
                time.sleep(interval)
                try:
                    self.flush()
                except Exception as exc:  # noqa: BLE001 - a lost batch is only stale times
                    log.warning("could not write last-seen times: %s", exc)
                finally:
                    connection.close()  # back to the pool between flushes

        thread = threading.Thread(target=loop, name="last-seen-flusher", daemon=True)
        thread.start()
        return thread


def _relaxed_commit() -> None:
    """Commit the current transaction without waiting for its WAL to reach the disk.

    For what agents send again anyway (a status report every minute, last-seen times): a
    crash can lose the last fraction of a second of these, never corrupt anything, and the
    next report restores them. Waiting for the disk flush was a fifth of PostgreSQL's busy
    time while 3,000 devices reported during a rollout (docs/scale.md).
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


#: the process's buffer; only the agent API turns it on (elsewhere writes are immediate)
last_seen_buffer = LastSeenBuffer()


def touch_last_seen(org_id, name: str) -> None:
    """Record that the device called in now: buffered in the agent API process, otherwise one
    immediate UPDATE (tests, management commands)."""
    if last_seen_buffer.enabled:
        last_seen_buffer.add(org_id, name)
    else:
        Device.objects.filter(org_id=org_id, name=name).update(last_seen=timezone.now())


#: members the agent may report but whose ``Unknown`` means "no news": the stored value stays
_KEEP_WHEN_UNKNOWN = ("applicationsSummary", "integrity")
#: members only the service writes; whatever the agent sends for them is ignored
_SERVICE_ONLY = ("summary", "updated", "lifecycle", "dependencySync")
AGENT_ACTOR = "service:flightctl-agent-api"
AGENT_COMPONENT = "flightctl-agent-api"


def record_agent_status(device: Device, status: dict) -> Device:
    """:func:`report_status` for a loaded ``device``, which is updated in place."""
    current = report_status(device.org_id, device.name, status)
    if current is not None:
        device.status, device.last_seen = current.status, current.last_seen
        device.resource_version = current.resource_version
    return device


def _locked_for_status(org_id, name):
    from devices.health import with_fleet_template_version

    return (with_fleet_template_version(Device.objects.filter(org_id=org_id, name=name))
            .defer("rendered_spec").select_for_update(of=("self",)))


#: the device row a status report locks, read with its fleet's TemplateVersion
_LOCKED_FOR_STATUS = CompiledLookup(_locked_for_status)


def report_status(org_id, name: str, status: dict) -> Device | None:
    """Store the status an agent reported, refresh ``last_seen`` and recompute the service-side
    members (api.md §4.3), recording the transitions as events. Returns the device as written
    (``rendered_spec`` deferred), or None if there is no such device.

    One transaction, three statements: the row is locked and read together with its fleet's
    TemplateVersion, written once, and its events inserted in one statement (no read before
    the lock: at fleet scale the agent API's CPU goes mostly into building queries). Locking
    matters because the periodic connectivity check may be recomputing the same row.
    AwaitingReconnect and ConflictPaused survive because they follow the device's annotations,
    which agents cannot touch. ``resourceVersion`` moves only when the status actually changed, so a
    heartbeat that reports nothing new does not invalidate clients' cached versions.
    """
    from devices.health import compute_service_status, disconnected_timeout, transition_events
    from flightctl.models import Event

    now = timezone.now()
    with transaction.atomic():
        _relaxed_commit()
        current = _LOCKED_FOR_STATUS.first(org_id, name)
        if current is None:
            return None
        stored = current.status
        before = complete_status(stored)
        merged = complete_status(status)
        merged.pop("lastSeen", None)
        for key in _KEEP_WHEN_UNKNOWN:
            if (merged.get(key) or {}).get("status") in (None, "", "Unknown"):
                merged[key] = before.get(key)
        for key in _SERVICE_ONLY:
            if key in before:
                merged[key] = before[key]
            else:
                merged.pop(key, None)
        current.status, current.last_seen = merged, now
        merged.update(compute_service_status(
            current, now=now, disconnected_after=disconnected_timeout(),
            fleet_template_version=current.fleet_template_version))
        changed = merged != stored
        version = current.resource_version + (1 if changed else 0)
        with connection.cursor() as cursor:
            # Raw SQL: the ORM's update() compiles a new statement on every report.
            cursor.execute(
                "UPDATE devices_device SET status = %s::jsonb, last_seen = %s, "
                "resource_version = %s, updated_at = CASE WHEN %s THEN %s ELSE updated_at END "
                "WHERE id = %s",
                [json.dumps(merged), now, version, changed, now, current.pk])
        events = transition_events(current, before, merged, actor=AGENT_ACTOR,
                                   component=AGENT_COMPONENT)
        if events:
            Event.objects.bulk_create(events)
    current.resource_version = version
    if changed:
        current.updated_at = now
    return current


def request_render(device: Device) -> None:
    """Ask for ``device`` to be rendered again (its spec or its lifecycle overlays changed).

    Enqueued in the caller's transaction, so the render happens if and only if the change
    commits.
    """
    from flightctl.tasks import enqueue

    enqueue("device-render", {"org_id": str(device.org_id), "name": device.name,
                              "kind": "Device"})


def request_renders(org_id, ids: list[int]) -> None:
    """Ask for many devices of one organization to be rendered again: one task per
    :data:`RENDER_BATCH` devices rather than one per device."""
    from flightctl.tasks import enqueue

    for start in range(0, len(ids), RENDER_BATCH):
        enqueue("device-render-batch", {"org_id": str(org_id),
                                        "ids": ids[start:start + RENDER_BATCH]})


def request_fleet_render(fleet) -> None:
    """Ask for every device owned by ``fleet`` to be rendered again (its fleet-level
    application lifecycle changed); one task renders them page by page."""
    from flightctl.tasks import enqueue

    enqueue("fleet-render", {"org_id": str(fleet.org_id), "name": fleet.name,
                             "kind": "Fleet"})
