"""Validation of ``spec.updatePolicy``: when a device downloads and applies updates.

Each ``UpdateSchedule`` names a 5-field cron expression (``at``), an optional IANA time zone
and a ``startGraceDuration``: the window after a cron fire during which the update may still
start. A grace window longer than the gap between two fires would overlap the next window, so it
must not exceed the shortest interval among the next five fires (api.md §3.5).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from flightctl.api.validation import Errors

from .common import (
    as_object,
    as_string,
    format_go_duration,
    parse_go_duration,
    reject_unknown_keys,
)

SCHEDULE_KEYS = ("downloadSchedule", "updateSchedule")
# Unambiguous three-letter zones; others (EST, CST, ...) mean different things in places.
THREE_LETTER_ZONES = ("GMT", "UTC")
_ZONE_COMPONENT_RE = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")
_CRON_FIRES = 5


def validate_update_policy(errors: Errors, path: str, value) -> None:
    policy = as_object(errors, path, value)
    if policy is None:
        return
    reject_unknown_keys(errors, path, policy, SCHEDULE_KEYS)
    for key in SCHEDULE_KEYS:
        if policy.get(key) is not None:
            validate_schedule(errors, f"{path}.{key}", policy[key])


def validate_schedule(errors: Errors, path: str, value) -> None:
    schedule = as_object(errors, path, value)
    if schedule is None:
        return
    zone = _check_time_zone(errors, f"{path}.timeZone", schedule.get("timeZone"))
    cron = _check_cron(errors, f"{path}.at", schedule.get("at"))
    grace_path = f"{path}.startGraceDuration"
    grace_text = as_string(errors, grace_path, schedule.get("startGraceDuration"), required=True)
    if grace_text is None:
        return
    grace = parse_go_duration(grace_text)
    if grace is None or grace < 0:
        errors.invalid(grace_path, grace_text, "invalid duration")
        return
    if cron is not None:
        shortest = _shortest_interval(cron, zone)
        if grace > shortest:
            errors.invalid(
                grace_path,
                grace_text,
                "startGraceDuration exceeds the cron interval between schedule times: "
                f"{format_go_duration(grace)}",
            )


def _check_cron(errors: Errors, path: str, value) -> str | None:
    expression = as_string(errors, path, value, required=True)
    if expression is None:
        return None
    # croniter also takes seconds fields and @-macros; the API allows the classic 5 fields only.
    if len(expression.split()) != 5:
        errors.invalid(path, expression, "invalid cron schedule: expected exactly 5 fields")
        return None
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError) as exc:
        errors.invalid(path, expression, f"invalid cron schedule: {exc}")
        return None
    return expression


def _check_time_zone(errors: Errors, path: str, value):
    """Return the tzinfo to evaluate the schedule in (UTC stands in for the device's Local)."""
    zone = as_string(errors, path, value)
    if zone is None:
        return UTC
    if not zone:
        errors.invalid(path, zone, "time zone must not be empty")
    elif zone.lower() == "local":
        return UTC
    elif len(zone) == 3:
        if zone in THREE_LETTER_ZONES:
            return ZoneInfo(zone)
        errors.invalid(path, zone, f"invalid time zone: {zone}")
    elif any(
        part in (".", "..") or part.startswith("-") or not _ZONE_COMPONENT_RE.match(part)
        for part in zone.split("/")
    ):
        errors.invalid(path, zone, f"invalid time zone: {zone}")
    else:
        try:
            return ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.invalid(path, zone, f"invalid time zone: {zone}")
    return UTC


def _shortest_interval(expression: str, zone) -> float:
    fires = croniter(expression, datetime.now(zone))
    times = [fires.get_next(datetime) for _ in range(_CRON_FIRES)]
    stamps = [fire.timestamp() for fire in times]
    return min(later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False))
