"""Conditions: the ``{type, status, reason, message, lastTransitionTime}`` entries of a status.

Every kind keeps some (a Fleet's ``Valid`` and ``RolloutInProgress``, a Device's ``SpecValid``
and ``MultipleOwners``, an EnrollmentRequest's ``Approved``, a Repository's ``Accessible``);
this is the one place that reads and writes them. The rules are Kubernetes': a type appears
once (when an agent repeats one, the last wins on reading), and ``lastTransitionTime`` moves
only when ``status`` flips, to the second (:func:`flightctl.api.serializers.now_timestamp`).
"""

from __future__ import annotations

from flightctl.api.serializers import now_timestamp


def find_condition(conditions, type_: str) -> dict | None:
    """The condition of ``type_`` in a list of conditions (the last one if it repeats)."""
    found = None
    for condition in conditions or []:
        if isinstance(condition, dict) and condition.get("type") == type_:
            found = condition
    return found


def get_condition(status: dict | None, type_: str) -> dict | None:
    """The condition of ``type_`` in a status document's ``conditions``."""
    return find_condition((status or {}).get("conditions"), type_)


def is_true(status: dict | None, type_: str) -> bool:
    condition = get_condition(status, type_)
    return bool(condition and condition.get("status") == "True")


def update_conditions(conditions: list, type_: str, ok: bool, reason: str,
                      message: str = "") -> bool:
    """Set the condition of ``type_`` in ``conditions`` (in place); True if anything but the
    timestamp changed."""
    value = "True" if ok else "False"
    current = find_condition(conditions, type_)
    if current is None:
        conditions.append({"type": type_, "status": value, "reason": reason,
                           "message": message, "lastTransitionTime": now_timestamp()})
        return True
    if (current.get("status"), current.get("reason"), current.get("message")) == (
            value, reason, message):
        return False
    if current.get("status") != value:
        current["lastTransitionTime"] = now_timestamp()
    current.update(status=value, reason=reason, message=message)
    return True


def set_condition(status: dict, type_: str, ok: bool, reason: str, message: str = "") -> bool:
    """:func:`update_conditions` on a status document's ``conditions`` (created if missing)."""
    return update_conditions(status.setdefault("conditions", []), type_, ok, reason, message)
