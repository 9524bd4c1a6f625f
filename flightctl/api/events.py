"""Recording events. Called inside the transaction of the change the event describes."""

from __future__ import annotations

from flightctl.models import Event, EventType

# Who made a change (``Event.actor``) and which process did (``Event.source_component``), when
# the service itself acts; a user's changes name the user (:func:`actor_of`).
API_ACTOR, API_COMPONENT = "service:flightctl-api", "flightctl-api"
WORKER_ACTOR, WORKER_COMPONENT = "service:flightctl-worker", "flightctl-worker"
AGENT_API_ACTOR, AGENT_API_COMPONENT = "service:flightctl-agent-api", "flightctl-agent-api"
RESTORE_ACTOR, RESTORE_COMPONENT = "service:flightctl-restore", "flightctl-restore"


def actor_of(user) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return API_ACTOR
    return f"user:{user.get_username()}"


def record_event(
    org_id,
    kind: str,
    name: str,
    reason: str,
    message: str,
    *,
    actor: str = API_ACTOR,
    type: str = EventType.NORMAL,
    details: dict | None = None,
    component: str = API_COMPONENT,
) -> Event:
    return Event.objects.create(
        org_id=org_id,
        involved_kind=kind,
        involved_name=name,
        reason=reason,
        message=message,
        actor=actor,
        type=type,
        details=details,
        source_component=component,
    )


def resource_updated_details(fields: list[str], previous_owner=None, new_owner=None) -> dict:
    details: dict = {"detailType": "ResourceUpdated", "updatedFields": fields}
    if "owner" in fields:
        details["previousOwner"] = previous_owner or ""
        details["newOwner"] = new_owner or ""
    return details
