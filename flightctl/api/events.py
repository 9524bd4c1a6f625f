"""Recording events. Called inside the transaction of the change the event describes."""

from __future__ import annotations

from flightctl.models import Event, EventType


def actor_of(user) -> str:
    if user is None or not getattr(user, "is_authenticated", False):
        return "service:flightctl-api"
    return f"user:{user.get_username()}"


def record_event(
    org_id,
    kind: str,
    name: str,
    reason: str,
    message: str,
    *,
    actor: str = "service:flightctl-api",
    type: str = EventType.NORMAL,
    details: dict | None = None,
    component: str = "flightctl-api",
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
