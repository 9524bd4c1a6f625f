"""Which devices a fleet's label selector (and a batch's) selects, as database queries."""

from __future__ import annotations

from django.db.models import Q


def label_selector_q(selector: dict | None) -> Q | None:
    """A ``LabelSelector`` as a Q over Device.labels; None when it selects nothing.

    ``matchLabels`` is a JSONB containment (GIN index); ``matchExpressions`` use the same
    operators as the Kubernetes API. An empty or absent selector matches no device.
    """
    if not selector:
        return None
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return None
    q = Q(labels__contains=match_labels) if match_labels else Q()
    for expr in expressions:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        has_key = Q(labels__has_key=key)
        in_values = Q()
        for value in values:
            in_values |= Q(labels__contains={key: value})
        if op == "In":
            q &= in_values if values else Q(pk__in=[])
        elif op == "NotIn":
            q &= ~in_values if values else Q()
        elif op == "Exists":
            q &= has_key
        elif op == "DoesNotExist":
            q &= ~has_key
    return q


def matches(selector: dict | None, labels: dict) -> bool:
    """The same test in Python, for one label map."""
    if not selector:
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not match_labels and not expressions:
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expr in expressions:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": not (key in labels and labels[key] in values),
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True
