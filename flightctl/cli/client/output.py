"""Printing API objects: raw JSON/YAML, names, and the reference's tables per kind.

A table is a header row and value rows, aligned in columns separated by three spaces (column
titles such as ``LAST SYNC`` contain single spaces, so scripts can split on two or more).
Empty values print as ``<none>``, as the reference CLI does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import click
import yaml

from flightctl.cli.client.errors import CliError

NONE = "<none>"
FORMATS = ("table", "wide", "json", "yaml", "name")


def dump(obj, fmt: str) -> str:
    """The object exactly as the API returned it, in JSON or YAML."""
    if fmt == "json":
        return json.dumps(obj, indent=2)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def emit(obj, fmt: str) -> None:
    text = dump(obj, fmt)
    click.echo(text.rstrip("\n"))


def render_table(headers: list[str], rows: Iterable[list[str]]) -> str:
    rows = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    lines = []
    for row in [headers, *rows]:
        padded = [value.ljust(widths[i]) for i, value in enumerate(row[:-1])]
        lines.append("   ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None or value == "" or value == {} or value == []:
        return NONE
    text = str(value)
    # A table row is one line: newlines in messages would break column parsing.
    return " ".join(text.split()) if "\n" in text else text


# -- field helpers ------------------------------------------------------------------------------

def dig(obj, *path, default=None):
    """``obj[path[0]][path[1]]...`` or ``default`` if any step is missing."""
    for key in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(key)
        if obj is None:
            return default
    return obj


def condition(obj, type_: str) -> dict | None:
    for cond in dig(obj, "status", "conditions", default=[]) or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def condition_status(obj, type_: str, default: str = "Unknown") -> str:
    cond = condition(obj, type_)
    return str(cond.get("status")) if cond else default


def labels_text(labels: dict | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def selector_text(selector: dict | None) -> str:
    """A LabelSelector in the ``-l`` syntax: ``k=v,k in (a,b),!k``."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(expr.get("values") or [])
        parts.append({"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                      "Exists": key, "DoesNotExist": f"!{key}"}.get(op, f"{key} {op}"))
    return ",".join(parts)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: str | None, now: datetime | None = None) -> str:
    """``kubectl``-style age of a timestamp: ``42s``, ``7m``, ``3h``, ``12d``."""
    then = parse_time(value)
    if then is None:
        return NONE
    return duration_text(((now or datetime.now(UTC)) - then).total_seconds())


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# -- rows per kind ------------------------------------------------------------------------------

Row = Callable[[dict], list]


def _device(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), dig(obj, "metadata", "labels", "alias"),
            dig(obj, "metadata", "owner"), dig(obj, "status", "summary", "status"),
            dig(obj, "status", "updated", "status"),
            dig(obj, "status", "applicationsSummary", "status")]


def _device_wide(obj: dict) -> list:
    return [*_device(obj), labels_text(dig(obj, "metadata", "labels"))]


def _fleet(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), dig(obj, "metadata", "owner"),
            selector_text(dig(obj, "spec", "selector")), condition_status(obj, "Valid")]


def _fleet_summary(obj: dict) -> list:
    return [*_fleet(obj), dig(obj, "status", "devicesSummary", "total", default=0)]


def approval_state(obj: dict) -> str:
    approval = dig(obj, "status", "approval")
    if not approval:
        return "Pending"
    return "Approved" if approval.get("approved") else "Denied"


def _enrollment(obj: dict) -> list:
    approval = dig(obj, "status", "approval") or {}
    return [dig(obj, "metadata", "name"), approval_state(obj), approval.get("approvedBy"),
            labels_text(approval.get("labels"))]


def _template_version(obj: dict) -> list:
    return [dig(obj, "spec", "fleet"), dig(obj, "metadata", "name")]


def _repository(obj: dict) -> list:
    spec = obj.get("spec") or {}
    return [dig(obj, "metadata", "name"), spec.get("type"), spec.get("url") or
            spec.get("registry"), condition_status(obj, "Accessible")]


def _resource_sync(obj: dict) -> list:
    spec = obj.get("spec") or {}
    synced = condition(obj, "Synced") or {}
    return [dig(obj, "metadata", "name"), spec.get("repository"), spec.get("path"),
            spec.get("targetRevision"), condition_status(obj, "Accessible"),
            condition_status(obj, "Synced"), age(synced.get("lastTransitionTime"))
            if synced.get("lastTransitionTime") else NONE]


def csr_condition(obj: dict) -> str:
    for type_ in ("Approved", "Denied", "Failed"):
        if condition_status(obj, type_, "") == "True":
            issued = type_ == "Approved" and dig(obj, "status", "certificate")
            return f"{type_},Issued" if issued else type_
    return "Pending"


def _csr(obj: dict) -> list:
    seconds = dig(obj, "spec", "expirationSeconds")
    return [dig(obj, "metadata", "name"), age(dig(obj, "metadata", "creationTimestamp")),
            dig(obj, "spec", "signerName"), dig(obj, "spec", "username"),
            duration_text(seconds) if seconds is not None else NONE, csr_condition(obj)]


def _event(obj: dict) -> list:
    return [age(dig(obj, "metadata", "creationTimestamp")),
            dig(obj, "involvedObject", "kind"), dig(obj, "involvedObject", "name"),
            obj.get("type"), obj.get("message")]


def _organization(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), dig(obj, "spec", "displayName"),
            dig(obj, "spec", "externalId")]


def _auth_provider(obj: dict) -> list:
    spec = obj.get("spec") or {}
    enabled = spec.get("enabled", True)
    return [dig(obj, "metadata", "name"), spec.get("providerType"), spec.get("issuer"),
            spec.get("clientId"), str(bool(enabled)).lower()]


def _phase(obj: dict) -> str:
    phase = dig(obj, "status", "phase")
    if phase:
        return phase
    conditions = dig(obj, "status", "conditions", default=[]) or []
    return conditions[-1].get("reason") if conditions else "Pending"


def _created(obj: dict) -> str:
    return age(dig(obj, "metadata", "creationTimestamp"))


def _image_build(obj: dict) -> list:
    spec = obj.get("spec") or {}
    source = spec.get("source") or {}
    dest = spec.get("destination") or {}
    return [dig(obj, "metadata", "name"), _phase(obj),
            ":".join(filter(None, [source.get("imageName"), source.get("imageTag")])),
            ":".join(filter(None, [dest.get("imageName"), dest.get("tag") or
                                   dest.get("imageTag")])), _created(obj)]


def _image_export(obj: dict) -> list:
    spec = obj.get("spec") or {}
    source = spec.get("source") or {}
    return [dig(obj, "metadata", "name"), _phase(obj),
            source.get("imageBuildRef") or source.get("imageName"),
            dig(spec, "destination", "imageName"), spec.get("format"), _created(obj)]


def _image_promotion(obj: dict) -> list:
    spec = obj.get("spec") or {}
    target = spec.get("target") or {}
    return [dig(obj, "metadata", "name"), _phase(obj), dig(spec, "source", "imageBuildRef"),
            target.get("catalog"), target.get("item"), target.get("version"), _created(obj)]


def _catalog(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), dig(obj, "spec", "displayName"), _created(obj)]


def _catalog_item(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), dig(obj, "metadata", "catalog"),
            dig(obj, "spec", "type"), _created(obj)]


def _vulnerability(obj: dict) -> list:
    return [obj.get("cveId") or dig(obj, "metadata", "name"), obj.get("severity"),
            obj.get("cvssScore"), obj.get("affectedDevices"), obj.get("publishedAt")]


def _generic(obj: dict) -> list:
    return [dig(obj, "metadata", "name"), _created(obj)]


# plural → (headers, row, wide headers, wide row); the wide variant adds columns.
TABLES: dict[str, tuple[list[str], Row, list[str] | None, Row | None]] = {
    "devices": (["NAME", "ALIAS", "OWNER", "SYSTEM", "UPDATED", "APPLICATIONS"], _device,
                ["NAME", "ALIAS", "OWNER", "SYSTEM", "UPDATED", "APPLICATIONS", "LABELS"],
                _device_wide),
    "fleets": (["NAME", "OWNER", "SELECTOR", "VALID"], _fleet, None, None),
    "enrollmentrequests": (["NAME", "APPROVAL", "APPROVER", "APPROVED LABELS"], _enrollment,
                           None, None),
    "templateversions": (["FLEET", "NAME"], _template_version, None, None),
    "repositories": (["NAME", "TYPE", "REPOSITORY URL", "ACCESSIBLE"], _repository, None, None),
    "resourcesyncs": (["NAME", "REPOSITORY", "PATH", "REVISION", "ACCESSIBLE", "SYNCED",
                       "LAST SYNC"], _resource_sync, None, None),
    "certificatesigningrequests": (["NAME", "AGE", "SIGNERNAME", "REQUESTOR",
                                    "REQUESTEDDURATION", "CONDITION"], _csr, None, None),
    "events": (["AGE", "INVOLVEDOBJECT.KIND", "INVOLVEDOBJECT.NAME", "TYPE", "MESSAGE"], _event,
               None, None),
    "organizations": (["NAME", "DISPLAY NAME", "EXTERNAL ID"], _organization, None, None),
    "authproviders": (["NAME", "TYPE", "ISSUER", "CLIENT ID", "ENABLED"], _auth_provider, None,
                      None),
    "imagebuilds": (["NAME", "PHASE", "INPUT", "OUTPUT", "AGE"], _image_build, None, None),
    "imageexports": (["NAME", "PHASE", "SOURCE", "OUTPUT", "FORMAT", "AGE"], _image_export, None,
                     None),
    "imagepromotions": (["NAME", "PHASE", "BUILD", "CATALOG", "ITEM", "VERSION", "AGE"],
                        _image_promotion, None, None),
    "catalogs": (["NAME", "DISPLAY NAME", "AGE"], _catalog, None, None),
    "catalogitems": (["NAME", "CATALOG", "TYPE", "AGE"], _catalog_item, None, None),
    "vulnerabilities": (["CVE", "SEVERITY", "CVSS", "DEVICES", "PUBLISHED"], _vulnerability,
                        None, None),
}


def table(plural: str, items: list[dict], *, wide: bool = False, fleet_summary: bool = False
          ) -> str:
    """The reference's table of ``items`` of one kind."""
    if plural == "fleets" and fleet_summary:
        return render_table(["NAME", "OWNER", "SELECTOR", "VALID", "DEVICES"],
                            [_fleet_summary(o) for o in items])
    headers, row, wide_headers, wide_row = TABLES.get(plural, (["NAME", "AGE"], _generic, None,
                                                                None))
    if wide and wide_headers:
        headers, row = wide_headers, wide_row
    return render_table(headers, [row(o) for o in items])


def summary_table(summary: dict) -> str:
    """``get devices --summary``: counts per status type, then per capability."""
    rows = []
    for key, title in (("summaryStatus", "SYSTEM"), ("updateStatus", "UPDATED"),
                       ("applicationStatus", "APPLICATIONS")):
        for status, count in sorted((summary.get(key) or {}).items()):
            rows.append([title, status, str(count)])
    text = [f"Devices: {summary.get('total', 0)}"]
    if rows:
        text.append(render_table(["STATUS TYPE", "STATUS", "COUNT"], rows))
    capabilities = []
    for capability, counts in sorted((summary.get("capabilities") or {}).items()):
        for value, count in sorted((counts or {}).items()):
            capabilities.append([capability, value, str(count)])
    if capabilities:
        text.append("")
        text.append(render_table(["CAPABILITY", "VALUE", "COUNT"], capabilities))
    return "\n".join(text)


def names(items: list[dict], kind: str) -> str:
    """``-o name``: one ``kind/name`` per item, kubectl's form and what every command taking
    ``TYPE/NAME`` accepts (``flightctl approve $(flightctl get er -o name)``). ``kind`` is the
    CLI's singular (``enrollmentrequest``)."""
    return "\n".join(f"{kind}/{dig(o, 'metadata', 'name', default='')}" for o in items)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise CliError(f"output format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt
