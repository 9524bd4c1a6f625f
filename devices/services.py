"""Device operations of the agent API: agent status reports and last-seen times.

The agent API calls these rather than touching Device rows itself, so the rules for agent
status and last-seen live in one place (rendered specs: devices.rendering, devices.api).
"""

from __future__ import annotations

import json
import logging
import threading
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.pq import TransactionStatus

from devices import bulk
from devices.health import (
    compute_service_status,
    disconnected_timeout,
    transition_events,
    with_fleet_template_version,
)
from devices.models import Device
from devices.status import complete_status
from flightctl.api.events import AGENT_API_ACTOR, AGENT_API_COMPONENT
from flightctl.compiled import CompiledLookup
from flightctl.models import Event

log = logging.getLogger(__name__)


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

    def add(self, org_id, name: str, *, force: bool = False) -> None:
        """Buffer the device's last-seen time; ``force``: even if written moments ago (a
        render delivered, which rollout pacing reads: fleets.pacing)."""
        key = (str(org_id), name)
        now = time.monotonic()
        with self._lock:
            if not force and now - self._written.get(key, -1e9) < self.granularity:
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

        with transaction.atomic():
            _relaxed_commit()
            bulk.write_last_seen(pending)
        return len(pending)

    def run_flusher(self, interval: float = 1.0) -> threading.Thread:
        """Turn batching on and flush every ``interval`` seconds in a daemon thread."""
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
    """Commit the current transaction without waiting for its WAL to reach the disk (with
    ``status_synchronous_commit`` at its default, ``off``; docs/deploy-multihost.md).

    For what agents send again anyway (a status report every minute, last-seen times): a
    crash can lose the last fraction of a second of these, never corrupt anything, and the
    next report restores them. Waiting for the disk flush was a fifth of PostgreSQL's busy
    time while 3,000 devices reported during a rollout (docs/scale.md).
    """
    with connection.cursor() as cursor:
        cursor.execute(relaxed_commit())


def relaxed_commit() -> str:
    """:func:`_relaxed_commit`'s statement, which a status report also sends in front of its
    UPDATE (one round trip fewer: Django's psycopg cursors bind parameters client-side, so one
    execute may carry several statements). The level is a validated keyword
    (``flightctl.config`` checks ``status_synchronous_commit``), never free text."""
    return f"SET LOCAL synchronous_commit TO {settings.FLIGHTCTL.status_synchronous_commit}"


#: the process's buffer; only the agent API turns it on (elsewhere writes are immediate)
last_seen_buffer = LastSeenBuffer()


def touch_last_seen(org_id, name: str, *, delivered: bool = False) -> None:
    """Record that the device called in now: buffered in the agent API process, otherwise one
    immediate UPDATE (tests, management commands). ``delivered``: the call is a render handed
    to the device's waiting long-poll, always written (rollout pacing reads it)."""
    if last_seen_buffer.enabled:
        last_seen_buffer.add(org_id, name, force=delivered)
    else:
        Device.objects.filter(org_id=org_id, name=name).update(last_seen=timezone.now())


#: members the agent may report but whose ``Unknown`` means "no news": the stored value stays
_KEEP_WHEN_UNKNOWN = ("applicationsSummary", "integrity")
#: members only the service writes; whatever the agent sends for them is ignored
_SERVICE_ONLY = ("summary", "updated", "lifecycle", "dependencySync")


def record_agent_status(device: Device, status: dict) -> Device:
    """:func:`report_status` for a loaded ``device``, which is updated in place."""
    current = report_status(device.org_id, device.name, status)
    if current is not None:
        device.status, device.last_seen = current.status, current.last_seen
        device.resource_version = current.resource_version
    return device


def _locked_for_status(org_id, name):
    return (with_fleet_template_version(Device.objects.filter(org_id=org_id, name=name))
            .defer("rendered_spec").select_for_update(of=("self",)))


#: the device row a status report locks, read with its fleet's TemplateVersion
_LOCKED_FOR_STATUS = CompiledLookup(_locked_for_status)


def report_status(org_id, name: str, status: dict) -> Device | None:
    """Store the status an agent reported, refresh ``last_seen`` and recompute the service-side
    members (api.md §4.3), recording the transitions as events. Returns the device as written
    (``rendered_spec`` deferred), or None if there is no such device.

    One transaction: the row is locked and read together with its fleet's TemplateVersion,
    written once, and its events inserted in one statement (no read before the lock: at fleet
    scale the agent API's CPU goes mostly into building queries). Locking matters because the
    periodic connectivity check may be recomputing the same row. AwaitingReconnect and
    ConflictPaused survive because they follow the device's annotations, which agents cannot
    touch. ``resourceVersion`` moves only when the status actually changed, so a heartbeat
    that reports nothing new does not invalidate clients' cached versions.

    Outside a transaction (the agent API), a report that records no event takes two round
    trips to PostgreSQL instead of five: see :func:`_report_in_two_round_trips`.
    """
    now = timezone.now()
    if not connection.in_atomic_block:
        written = _report_in_two_round_trips(org_id, name, status, now)
        if written is not _NEEDS_EVENTS:
            return written
    with transaction.atomic():
        current = _LOCKED_FOR_STATUS.first(org_id, name)
        if current is None:
            return None
        before, merged, changed, version = _merge_status(current, status, now)
        with connection.cursor() as cursor:
            cursor.execute(f"{relaxed_commit()}; {_STATUS_UPDATE}",
                           _status_update_params(current, merged, changed, version, now))
        events = transition_events(current, before, merged, actor=AGENT_API_ACTOR,
                                   component=AGENT_API_COMPONENT)
        if events:
            Event.objects.bulk_create(events)
    return _as_written(current, changed, version, now)


#: :func:`_report_in_two_round_trips` found transitions to record: the report is redone in a
#: Django transaction, whose ORM inserts the events
_NEEDS_EVENTS = object()

# Raw SQL: the ORM's update() compiles a new statement on every report.
_STATUS_UPDATE = (
    "UPDATE devices_device SET status = %s::jsonb, last_seen = %s, resource_version = %s, "
    "updated_at = CASE WHEN %s THEN %s ELSE updated_at END WHERE id = %s")


def _report_in_two_round_trips(org_id, name: str, status: dict, now):
    """The same locked read and write as :func:`report_status`'s transaction, with the
    transaction's control statements riding along: ``BEGIN`` travels with the locked read and
    ``COMMIT`` with the write (Django's psycopg cursors bind parameters client-side, so one
    execute may carry several statements). Django's transaction would send each of
    ``BEGIN``, the read, the write and ``COMMIT`` as its own round trip, and under load every
    round trip is a wake-up of two processes on busy cores: the status tail at fleet scale
    was mostly those waits (docs/scale.md). Runs with the connection in autocommit, so Django
    sees no transaction; any failure rolls back before it propagates. A report that changes
    the device's summary (events to insert) rolls back and returns :data:`_NEEDS_EVENTS`."""
    try:
        current = _LOCKED_FOR_STATUS.first(org_id, name, prefix="BEGIN")
        if current is None:
            _rollback()
            return None
        before, merged, changed, version = _merge_status(current, status, now)
        if transition_events(current, before, merged, actor=AGENT_API_ACTOR,
                             component=AGENT_API_COMPONENT):
            _rollback()
            return _NEEDS_EVENTS
        with connection.cursor() as cursor:
            cursor.execute(f"{relaxed_commit()}; {_STATUS_UPDATE}; COMMIT",
                           _status_update_params(current, merged, changed, version, now))
    except BaseException:
        _rollback()
        raise
    return _as_written(current, changed, version, now)


def _rollback() -> None:
    """End :func:`_report_in_two_round_trips`'s transaction, if the connection still has one
    (a broken connection has none to end, and its own error is the one to report)."""
    try:
        if connection.connection is not None and \
                connection.connection.info.transaction_status != TransactionStatus.IDLE:
            with connection.cursor() as cursor:
                cursor.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the caller's error, if any, is the one that matters
        log.debug("rollback after a status report failed", exc_info=True)


def _merge_status(current: Device, status: dict, now):
    """The status to store: the agent's report over the stored one, with the members the
    service owns recomputed. Returns (before, merged, changed, new resource version)."""
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
    return before, merged, changed, current.resource_version + (1 if changed else 0)


def _status_update_params(current: Device, merged: dict, changed: bool, version: int,
                          now) -> list:
    return [json.dumps(merged), now, version, changed, now, current.pk]


def _as_written(current: Device, changed: bool, version: int, now) -> Device:
    current.resource_version = version
    if changed:
        current.updated_at = now
    return current
