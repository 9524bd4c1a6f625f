"""The fields of a Device a ``fieldSelector`` may name, and the columns that answer them."""

from django.db.models import Q

from flightctl.api.selectors import Field, SelectorError


def _name_or_alias(op: str, values: list[str]) -> Q:
    """``metadata.nameOrAlias``: the name or the ``alias`` label matches (api.md §5.2)."""
    if op in ("=", "in"):
        return Q(name__in=values) | Q(alias__in=values)
    if op in ("!=", "notin"):
        return ~Q(name__in=values) & (~Q(alias__in=values) | Q(alias=None))
    if op == "contains":
        return Q(name__contains=values[0]) | Q(alias__contains=values[0])
    if op == "notcontains":
        return ~Q(name__contains=values[0]) & (~Q(alias__contains=values[0]) | Q(alias=None))
    raise SelectorError(f'operator "{op}" is not supported for field "metadata.nameOrAlias"')


DEVICE_FIELDS = {
    "metadata.alias": Field("alias"),
    "metadata.nameOrAlias": Field(_name_or_alias),
    "status.summary.status": Field("summary_status"),
    "status.applicationsSummary.status": Field("apps_status"),
    "status.updated.status": Field("updated_status"),
    "status.lifecycle.status": Field("lifecycle_status"),
    "status.capabilities.osMode": Field("os_mode"),
}
