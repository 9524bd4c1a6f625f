"""Update policy: cron windows in which the device may download and apply updates (§4.4).

A schedule is ready when now falls within ``startGraceDuration`` after the last cron fire time.
No schedule means always ready. Not ready defers the update (retryable), it never fails it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flightctl_agent import errors
from flightctl_agent.config import parse_duration

_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = end = int(part)
        values.update(range(start, end + 1, step))
    return values


def matches(expr: str, moment: datetime) -> bool:
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"invalid cron expression {expr!r}")
    sets = [_field(f, lo, hi) for f, (lo, hi) in zip(fields, _RANGES, strict=True)]
    dow = (moment.weekday() + 1) % 7
    return (moment.minute in sets[0] and moment.hour in sets[1] and moment.day in sets[2]
            and moment.month in sets[3] and (dow in sets[4] or (7 in sets[4] and dow == 0)))


def ready(schedule: dict, now: datetime | None = None) -> bool:
    tz_name = schedule.get("timeZone") or "Local"
    tz = None if tz_name == "Local" else ZoneInfo(tz_name)
    now = now or datetime.now(tz).astimezone(tz)
    grace = parse_duration(schedule.get("startGraceDuration") or "0s")
    minute = now.replace(second=0, microsecond=0)
    # The schedule is open if it fired at a minute within the grace window before now.
    for back in range(int(grace // 60) + 1):
        if matches(schedule["at"], minute - timedelta(minutes=back)):
            return True
    return False


def check(update_policy: dict | None, key: str) -> None:
    schedule = (update_policy or {}).get(key)
    if schedule and not ready(schedule):
        what = "download" if key == "downloadSchedule" else "update"
        raise errors.NotReady(f"{what} policy", f"{what} policy not ready")
