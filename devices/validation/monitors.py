"""Validation of ``spec.resources``: the agent's CPU, memory and disk usage monitors.

A ``ResourceMonitor`` is discriminated by ``monitorType``; each type may appear once. Its
alert rules fire when usage stays above ``percentage`` for ``duration``, which only makes sense
when the sampling interval is shorter than that duration, and severities must escalate
(Info < Warning < Critical percentages) (api.md §3.6, agent.md §8.2).
"""

from __future__ import annotations

import re

from flightctl.api.validation import Errors

from .common import (
    SpecContext,
    as_list,
    as_object,
    as_string,
    check_absolute_path,
    check_enum,
    format_go_duration,
    is_number,
    parse_simple_duration,
)

MONITOR_TYPES = ("CPU", "Memory", "Disk")
SEVERITIES = ("Info", "Warning", "Critical")  # in escalating order
SAMPLING_INTERVAL_RE = re.compile(r"^[1-9]\d*[smh]$")
MAX_DESCRIPTION = 256


def validate_resources(ctx: SpecContext, path: str, value) -> None:
    errors = ctx.errors
    monitors = as_list(errors, path, value)
    seen: set[str] = set()
    for index, item in enumerate(monitors or []):
        monitor_path = f"{path}[{index}]"
        monitor = as_object(errors, monitor_path, item)
        if monitor is None:
            continue
        monitor_type = monitor.get("monitorType")
        type_path = f"{monitor_path}.monitorType"
        if not check_enum(errors, type_path, monitor_type, MONITOR_TYPES, required=True):
            continue
        if monitor_type in seen:
            errors.invalid(
                type_path, monitor_type, f"duplicate monitorType in resources: {monitor_type}"
            )
        seen.add(monitor_type)
        _validate_monitor(errors, monitor_path, monitor, monitor_type)


def _validate_monitor(errors: Errors, path: str, monitor: dict, monitor_type: str) -> None:
    if monitor_type == "Disk":
        disk_path = as_string(errors, f"{path}.path", monitor.get("path"), required=True)
        if disk_path is not None:
            check_absolute_path(errors, f"{path}.path", disk_path)
    elif "path" in monitor:
        errors.forbidden(
            f"{path}.path",
            f"invalid field for {monitor_type} monitor: {monitor_type} monitors cannot have a "
            "path field",
        )
    interval = as_string(
        errors, f"{path}.samplingInterval", monitor.get("samplingInterval"), required=True
    )
    if interval is not None and not SAMPLING_INTERVAL_RE.match(interval):
        errors.invalid(
            f"{path}.samplingInterval", interval, "must match the pattern ^[1-9]\\d*[smh]$"
        )
        interval = None
    rules = monitor.get("alertRules")
    if rules is None:
        errors.required(f"{path}.alertRules")
        return
    _validate_alert_rules(errors, f"{path}.alertRules", rules, interval)


def _validate_alert_rules(errors: Errors, path: str, value, interval: str | None) -> None:
    rules = as_list(errors, path, value)
    # severity -> (rule path, percentage) of the first rule of that severity
    by_severity: dict[str, tuple[str, float]] = {}
    for index, item in enumerate(rules or []):
        rule_path = f"{path}[{index}]"
        rule = as_object(errors, rule_path, item)
        if rule is None:
            continue
        severity = rule.get("severity")
        if not check_enum(errors, f"{rule_path}.severity", severity, SEVERITIES, required=True):
            continue
        if severity in by_severity:
            errors.invalid(
                f"{rule_path}.severity", severity, f"duplicate alertRule severity: {severity}"
            )
            continue
        percentage = _validate_rule(errors, rule_path, rule, interval)
        if percentage is not None:
            by_severity[severity] = (rule_path, percentage)
    _check_escalation(errors, by_severity)


def _validate_rule(errors: Errors, path: str, rule: dict, interval: str | None) -> float | None:
    duration = as_string(errors, f"{path}.duration", rule.get("duration"), required=True)
    duration_seconds = parse_simple_duration(duration) if duration is not None else None
    if duration is not None and duration_seconds is None:
        errors.invalid(f"{path}.duration", duration, "must match the pattern ^\\d+[smh]$")
    if duration_seconds is not None and interval is not None:
        interval_seconds = parse_simple_duration(interval)
        if interval_seconds >= duration_seconds:
            errors.invalid(
                f"{path}.duration",
                duration,
                f"sampling interval {format_go_duration(interval_seconds)} must be less than "
                f"the duration: {format_go_duration(duration_seconds)}",
            )
    description = as_string(errors, f"{path}.description", rule.get("description"), required=True)
    if description is not None and len(description) > MAX_DESCRIPTION:
        errors.too_long(f"{path}.description", description, MAX_DESCRIPTION)
    percentage = rule.get("percentage")
    if percentage is None:
        errors.required(f"{path}.percentage")
        return None
    if not is_number(percentage) or not 0 <= percentage <= 100:
        errors.invalid(f"{path}.percentage", percentage, "percentage must be between 0 and 100")
        return None
    return percentage


def _check_escalation(errors: Errors, by_severity: dict[str, tuple[str, float]]) -> None:
    """Lower severities must trigger at strictly lower percentages than higher ones."""
    present = [s for s in SEVERITIES if s in by_severity]
    for low_index, low in enumerate(present):
        for high in present[low_index + 1 :]:
            rule_path, low_pct = by_severity[low]
            if low_pct >= by_severity[high][1]:
                errors.invalid(
                    f"{rule_path}.percentage",
                    low_pct,
                    f"{low.lower()} alert percentage must be less than {high.lower()}",
                )
