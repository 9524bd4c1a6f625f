"""Hand-written validation of Fleet specs (Flight Control v1beta1, api.md §2.2).

A Fleet selects devices by label (``selector``), holds the DeviceSpec template they should run
(``template``, which may contain per-device placeholders) and optionally a ``rolloutPolicy``
that controls how a new template reaches the devices: batches of devices
(``deviceSelection``), a ``disruptionBudget`` limiting unavailable devices per group, success
thresholds and a default update timeout. Errors go to :class:`flightctl.api.validation.Errors`.
"""

from __future__ import annotations

import re

from devices.validation import validate_device_spec
from flightctl.api.validation import Errors

FLEET_SPEC_KEYS = ("selector", "template", "rolloutPolicy")
TEMPLATE_KEYS = ("metadata", "spec")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
OPERATORS_WITH_VALUES = ("In", "NotIn")
ROLLOUT_STRATEGIES = ("BatchSequence",)
PERCENTAGE_RE = re.compile(r"^(100|[1-9]?[0-9])%$")
DURATION_RE = re.compile(r"^(?:[1-9]\d*)?\d[smh]$")
GROUP_BY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_/.]*)?[A-Za-z0-9]$")


def _object(errors: Errors, path: str, value) -> dict | None:
    if isinstance(value, dict):
        return value
    errors.invalid(path, value, "must be an object")
    return None


def _list(errors: Errors, path: str, value) -> list:
    if isinstance(value, list):
        return value
    errors.invalid(path, value, "must be an array")
    return []


def _unknown_keys(errors: Errors, path: str, obj: dict, known: tuple[str, ...]) -> None:
    for key in obj:
        if key not in known:
            errors.invalid(path, key, f'unknown field "{key}"')


def _positive_int(errors: Errors, path: str, value) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or value < 1
    ):
        errors.invalid(path, value, "must be an integer greater than or equal to 1")


def _percentage(errors: Errors, path: str, value) -> None:
    if value is not None and not (isinstance(value, str) and PERCENTAGE_RE.match(value)):
        errors.invalid(
            path, value, f"doesn't match percentage pattern '{PERCENTAGE_RE.pattern}'"
        )


# -- label selectors ---------------------------------------------------------------------------


def validate_label_selector(selector, errors: Errors, path: str) -> None:
    """LabelSelector: ``matchLabels`` ANDed with ``matchExpressions``; at least one present."""
    selector = _object(errors, path, selector)
    if selector is None:
        return
    _unknown_keys(errors, path, selector, ("matchLabels", "matchExpressions"))
    labels, expressions = selector.get("matchLabels"), selector.get("matchExpressions")
    if labels is None and expressions is None:
        errors.required(
            path, "at least one of [matchLabels,matchExpressions] must appear in a label selector"
        )
    errors.labels(f"{path}.matchLabels", labels)
    if expressions is None:
        return
    expressions = _list(errors, f"{path}.matchExpressions", expressions)
    if isinstance(selector.get("matchExpressions"), list) and not expressions:
        errors.required(f"{path}.matchExpressions", "must have at least 1 item")
    for index, expression in enumerate(expressions):
        _match_expression(errors, f"{path}.matchExpressions[{index}]", expression)


def _match_expression(errors: Errors, path: str, value) -> None:
    expression = _object(errors, path, value)
    if expression is None:
        return
    key, operator, values = (expression.get(k) for k in ("key", "operator", "values"))
    if key is None:
        errors.required(f"{path}.key")
    else:
        errors.label_key(f"{path}.key", key)
    if operator is None:
        errors.required(f"{path}.operator")
    elif operator not in SELECTOR_OPERATORS:
        errors.unsupported(f"{path}.operator", operator, list(SELECTOR_OPERATORS))
    values_path = f"{path}.values"
    if operator in OPERATORS_WITH_VALUES and not values:
        errors.required(values_path, f"must be specified when operator is {operator}")
    elif operator in SELECTOR_OPERATORS and operator not in OPERATORS_WITH_VALUES and values:
        errors.forbidden(values_path, f"may not be specified when operator is {operator}")
    for index, item in enumerate(_list(errors, values_path, values) if values else []):
        errors.label_value(f"{values_path}[{index}]", item)


# -- fleet spec --------------------------------------------------------------------------------


def validate_fleet_spec(spec, errors: Errors, path: str = "spec") -> None:
    spec = _object(errors, path, spec)
    if spec is None:
        return
    _unknown_keys(errors, path, spec, FLEET_SPEC_KEYS)
    if spec.get("selector") is not None:
        validate_label_selector(spec["selector"], errors, f"{path}.selector")
    if spec.get("template") is None:
        errors.required(f"{path}.template")
    else:
        _validate_template(errors, f"{path}.template", spec["template"])
    if spec.get("rolloutPolicy") is not None:
        _validate_rollout_policy(errors, f"{path}.rolloutPolicy", spec["rolloutPolicy"])


def _validate_template(errors: Errors, path: str, value) -> None:
    template = _object(errors, path, value)
    if template is None:
        return
    _unknown_keys(errors, path, template, TEMPLATE_KEYS)
    metadata = template.get("metadata")
    if metadata is not None and _object(errors, f"{path}.metadata", metadata) is not None:
        errors.labels(f"{path}.metadata.labels", metadata.get("labels"))
    if template.get("spec") is None:
        errors.required(f"{path}.spec")
    else:
        validate_device_spec(template["spec"], errors, f"{path}.spec", fleet_template=True)


def _validate_rollout_policy(errors: Errors, path: str, value) -> None:
    policy = _object(errors, path, value)
    if policy is None:
        return
    _unknown_keys(
        errors,
        path,
        policy,
        ("deviceSelection", "disruptionBudget", "successThreshold", "defaultUpdateTimeout"),
    )
    selection, budget = policy.get("deviceSelection"), policy.get("disruptionBudget")
    if selection is None and budget is None:
        errors.required(
            path, "at least one of [deviceSelection, disruptionBudget] must be defined"
        )
    if selection is not None:
        _validate_device_selection(errors, f"{path}.deviceSelection", selection)
    if budget is not None:
        _validate_disruption_budget(errors, f"{path}.disruptionBudget", budget)
    _percentage(errors, f"{path}.successThreshold", policy.get("successThreshold"))
    timeout = policy.get("defaultUpdateTimeout")
    if timeout is not None and not (isinstance(timeout, str) and DURATION_RE.match(timeout)):
        errors.invalid(
            f"{path}.defaultUpdateTimeout", timeout, f"must match the pattern {DURATION_RE.pattern}"
        )


def _validate_device_selection(errors: Errors, path: str, value) -> None:
    selection = _object(errors, path, value)
    if selection is None:
        return
    strategy = selection.get("strategy")
    if strategy is None:
        errors.required(f"{path}.strategy")
    elif strategy not in ROLLOUT_STRATEGIES:
        errors.unsupported(f"{path}.strategy", strategy, list(ROLLOUT_STRATEGIES))
    sequence = selection.get("sequence")
    if sequence is None:
        return
    batches = _list(errors, f"{path}.sequence", sequence)
    if isinstance(sequence, list) and not batches:
        errors.required(f"{path}.sequence", "must have at least 1 item")
    for index, batch in enumerate(batches):
        _validate_batch(errors, f"{path}.sequence[{index}]", batch)


def _validate_batch(errors: Errors, path: str, value) -> None:
    if value is None:
        errors.required(path, "a batch in a batch sequence must not be null")
        return
    batch = _object(errors, path, value)
    if batch is None:
        return
    if batch.get("selector") is not None:
        validate_label_selector(batch["selector"], errors, f"{path}.selector")
    limit = batch.get("limit")
    if isinstance(limit, str):
        _percentage(errors, f"{path}.limit", limit)
    else:
        _positive_int(errors, f"{path}.limit", limit)
    _percentage(errors, f"{path}.successThreshold", batch.get("successThreshold"))


def _validate_disruption_budget(errors: Errors, path: str, value) -> None:
    budget = _object(errors, path, value)
    if budget is None:
        return
    if budget.get("minAvailable") is None and budget.get("maxUnavailable") is None:
        errors.required(
            path,
            "at least one of [minAvailable, maxUnavailable] must be defined in disruption budget",
        )
    _positive_int(errors, f"{path}.minAvailable", budget.get("minAvailable"))
    _positive_int(errors, f"{path}.maxUnavailable", budget.get("maxUnavailable"))
    group_by = budget.get("groupBy")
    if group_by is None:
        return
    seen: set[str] = set()
    for index, key in enumerate(_list(errors, f"{path}.groupBy", group_by)):
        key_path = f"{path}.groupBy[{index}]"
        if not isinstance(key, str) or not GROUP_BY_RE.match(key):
            errors.invalid(key_path, key, "must be a valid label key")
        elif key in seen:
            errors.invalid(key_path, key, "groupBy items must be unique")
        else:
            seen.add(key)
