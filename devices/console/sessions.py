"""Console sessions as the database knows them: listed on the device, one row each.

Life of a session (docs/api.md, "Remote console")::

    open_session (user API, the user's WebSocket)
        the device row is locked; a decommissioned, awaiting-reconnect or conflict-paused
        device is refused (409); the session is appended to the device's annotation
        ``device-controller/console``, the device is flagged ``console_pending`` and its
        long-poll woken at commit; the ConsoleSession row names the bridge address of the
        user API process; event ``ConsoleSessionOpened``.
    the agent's /rendered returns ``spec.consoles`` (devices.api.serializers)
    agent_session (agent API, the device's gRPC stream)
        the row of that session of that device; ``mark_connected`` when bridged.
    close_session (either side, whichever sees the end first)
        the row is deleted; the session leaves the annotation; event ``ConsoleSessionClosed``.
    touch (user API, every ``console_session_timeout / 3`` while it holds the WebSocket)
        ``seen_at`` of all the sessions the process holds, in one UPDATE.
    expire_stale (the periodic ``console-cleanup`` job, every ``console_session_timeout``)
        sessions no process refreshed for twice ``console_session_timeout`` (their server
        processes died with both ends, so nobody was left to close them) are closed as above.

Every function here is synchronous ORM code; the asynchronous servers call them in threads.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from devices import bulk
from devices.models import ConsoleSession, Device
from flightctl.api.annotations import AWAITING_RECONNECT, CONFLICT_PAUSED, DEVICE_CONSOLE
from flightctl.api.errors import ApiError, not_found
from flightctl.api.events import record_event

log = logging.getLogger(__name__)

OPENED, CLOSED = "ConsoleSessionOpened", "ConsoleSessionClosed"
#: a session's row is stale when not refreshed for this many ``console_session_timeout``s;
#: its holder refreshes it every third of one (websocket.Held)
STALE_FACTOR, TOUCH_FRACTION = 2, 1 / 3


def listed_sessions(annotations: dict | None) -> list[dict]:
    """The sessions ``device-controller/console`` lists (``[]`` when absent or unreadable)."""
    raw = (annotations or {}).get(DEVICE_CONSOLE)
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return []
    return [entry for entry in value if isinstance(entry, dict) and entry.get("sessionID")] \
        if isinstance(value, list) else []


def refusal(device: Device) -> str | None:
    """Why no console may be opened on ``device`` now (the reference's 409 messages)."""
    annotations = device.annotations or {}
    if str(annotations.get(AWAITING_RECONNECT, "")).lower() == "true":
        return "Device is awaiting reconnection after restore"
    if str(annotations.get(CONFLICT_PAUSED, "")).lower() == "true":
        return "Device is paused due to conflicts"
    lifecycle = ((device.status or {}).get("lifecycle") or {}).get("status")
    if (device.spec or {}).get("decommissioning") or lifecycle in ("Decommissioning",
                                                                   "Decommissioned"):
        return "Device is decommissioned"
    return None


def _write_listed(device: Device, sessions: list[dict], *, pending: bool = False) -> None:
    value = json.dumps(sessions, separators=(",", ":")) if sessions else None
    bulk.write_console_annotation(device, DEVICE_CONSOLE, value, pending=pending)


def open_session(org_id, name: str, metadata: str, *, actor: str, bridge: str,
                 session_id: uuid.UUID, stale_after: float) -> ConsoleSession:
    """List a new session on the device and record it (see the module docstring). Rows of
    this device's sessions no process refreshed within ``stale_after`` seconds (their user API
    process died) are dropped on the way. Raises ApiError 404 or 409."""
    with transaction.atomic():
        device = Device.objects.restrict(org_id).filter(name=name).select_for_update().first()
        if device is None:
            raise not_found("Device", name)
        reason = refusal(device)
        if reason:
            raise ApiError(409, reason)
        stale = ConsoleSession.objects.filter(
            org_id=org_id, device_name=name,
            seen_at__lt=timezone.now() - timedelta(seconds=stale_after))
        stale.delete()
        alive = {str(pk) for pk in ConsoleSession.objects.filter(
            org_id=org_id, device_name=name).values_list("id", flat=True)}
        sessions = [s for s in listed_sessions(device.annotations) if s["sessionID"] in alive]
        sessions.append({"sessionID": str(session_id), "sessionMetadata": metadata})
        _write_listed(device, sessions, pending=True)
        session = ConsoleSession.objects.create(id=session_id, org_id=org_id, device_name=name,
                                                actor=actor, bridge=bridge)
        record_event(org_id, "Device", name, OPENED,
                     f"Console session {session_id} opened by {actor}: {_describe(metadata)}",
                     actor=actor)
    return session


def _describe(metadata: str) -> str:
    try:
        parsed = json.loads(metadata)
    except ValueError:
        parsed = {}
    command = parsed.get("command") or {}
    what = " ".join([command.get("command") or "", *(command.get("args") or [])]).strip()
    tty = "with" if parsed.get("tty") else "without"
    return f"{what or 'login shell'}, {tty} a terminal"


def agent_session(org_id, device_name: str, session_id: str) -> ConsoleSession | None:
    """The open session ``session_id`` of this device (None: unknown, ended, or another
    device's)."""
    try:
        key = uuid.UUID(session_id)
    except ValueError:
        return None
    return ConsoleSession.objects.filter(id=key, org_id=org_id,
                                         device_name=device_name).first()


def mark_connected(session_id) -> None:
    ConsoleSession.objects.filter(id=session_id).update(connected_at=timezone.now())


def close_session(session_id, outcome: str) -> bool:
    """End the session: drop its row, unlist it from its device, record the event. False if
    it had already been closed (by the other side)."""
    session = ConsoleSession.objects.filter(id=session_id).first()
    if session is None:
        return False
    with transaction.atomic():
        # The device first, as open_session locks: never the two in the other order.
        device = (Device.objects.restrict(session.org_id).filter(name=session.device_name)
                  .select_for_update().first())
        deleted, _ = ConsoleSession.objects.filter(id=session_id).delete()
        if not deleted:
            return False  # the other side got here first
        if device is not None:
            sessions = listed_sessions(device.annotations)
            kept = [s for s in sessions if s["sessionID"] != str(session_id)]
            if kept != sessions:
                _write_listed(device, kept)
        record_event(session.org_id, "Device", session.device_name, CLOSED,
                     f"Console session {session_id} of {session.actor} closed: {outcome}",
                     actor=session.actor)
    log.info("console session %s of device %s closed: %s", session_id, session.device_name,
             outcome)
    return True


def touch(session_ids) -> None:
    """The holder of these sessions' WebSockets is alive: refresh their ``seen_at``."""
    ConsoleSession.objects.filter(id__in=list(session_ids)).update(seen_at=timezone.now())


def expire_stale(stale_after: float, limit: int = 500) -> int:
    """Close the sessions nobody refreshed within ``stale_after`` seconds (at most ``limit``
    per call: stale sessions are the rare leftovers of crashed processes); how many."""
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    stale = list(ConsoleSession.objects.filter(seen_at__lt=cutoff)
                 .order_by("seen_at").values_list("id", flat=True)[:limit])
    return sum(close_session(session_id, "expired: the server processes holding it are gone")
               for session_id in stale)
