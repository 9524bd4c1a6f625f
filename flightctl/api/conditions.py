"""Fleet conditions (``Valid``, ``RolloutInProgress``) kept in ``Fleet.status.conditions``."""

from __future__ import annotations

from datetime import UTC, datetime


def set_condition(status: dict, type_: str, ok: bool, reason: str, message: str = "") -> bool:
    """Set a condition in a status dict; True if anything but the timestamp changed."""
    conditions = status.setdefault("conditions", [])
    value = "True" if ok else "False"
    for condition in conditions:
        if condition.get("type") == type_:
            if (condition.get("status"), condition.get("reason"), condition.get("message")) == (
                    value, reason, message):
                return False
            if condition.get("status") != value:
                condition["lastTransitionTime"] = _now()
            condition.update(status=value, reason=reason, message=message)
            return True
    conditions.append({"type": type_, "status": value, "reason": reason, "message": message,
                       "lastTransitionTime": _now()})
    return True


def get_condition(status: dict, type_: str) -> dict | None:
    return next((c for c in (status or {}).get("conditions", []) if c.get("type") == type_), None)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
