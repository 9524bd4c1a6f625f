"""TemplateVersions and per-device specs.

A TemplateVersion freezes a fleet's template when it changes (``v<generation>``); a device's
spec is that template with its placeholders resolved for the device (``{{ .metadata.name }}``,
labels, ``getOrDefault`` ...). Validation already guarantees placeholders appear only in the
fields the reference allows, so resolving every string that contains one is equivalent to
walking the allowed fields — except base64 file content, which is decoded, resolved and
re-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from django.db import IntegrityError, transaction

from devices import bulk
from devices.choices import DeviceUpdatedStatus
from devices.health import MSG_FLEET_NOT_SCHEDULED
from devices.models import Device
from devices.owners import fleet_name
from devices.validation import validate_device_spec
from fleets.models import Fleet, TemplateVersion
from flightctl.api.annotations import TEMPLATE_VERSION
from flightctl.api.conditions import get_condition, set_condition
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.api.validation import Errors
from flightctl.models import EventType
from flightctl.templating import TemplateError, has_placeholders, render
from repos.models import Repository


def _resolve(value, name: str, labels: dict):
    if isinstance(value, str):
        return render(value, name, labels, missing_ok=False) if has_placeholders(value) else value
    if isinstance(value, list):
        return [_resolve(item, name, labels) for item in value]
    if isinstance(value, dict):
        if value.get("contentEncoding") == "base64" and isinstance(value.get("content"), str):
            resolved = {k: _resolve(v, name, labels) for k, v in value.items() if k != "content"}
            try:
                text = base64.b64decode(value["content"]).decode()
            except (binascii.Error, UnicodeDecodeError):
                resolved["content"] = value["content"]  # binary content has no placeholders
            else:
                if has_placeholders(text):
                    text = render(text, name, labels, missing_ok=False)
                resolved["content"] = base64.b64encode(text.encode()).decode()
            return resolved
        return {k: _resolve(v, name, labels) for k, v in value.items()}
    return value


def _has_placeholders(value) -> bool:
    if isinstance(value, str):
        return has_placeholders(value)
    if isinstance(value, list):
        return any(_has_placeholders(item) for item in value)
    if isinstance(value, dict):
        if value.get("contentEncoding") == "base64" and isinstance(value.get("content"), str):
            try:
                if has_placeholders(base64.b64decode(value["content"]).decode()):
                    return True
            except (binascii.Error, UnicodeDecodeError):
                pass
        return any(_has_placeholders(v) for v in value.values())
    return False


def device_spec(template_spec: dict, device: Device) -> dict:
    """The template resolved for one device; raises TemplateError (e.g. a missing label).

    What the placeholders produced is validated as a device's own spec would be: a template
    may not build what it could not write literally (``/etc/flightctl/./config.yaml`` from
    ``{{ "." }}``, a path with ``//`` or ``..``, a malformed image reference). A template
    without placeholders was validated as written and is not checked again per device.
    """
    template_spec = template_spec or {}
    resolved = _resolve(template_spec, device.name, device.labels or {})
    if _has_placeholders(template_spec):
        errors = Errors()
        validate_device_spec(resolved, errors, "spec")
        if errors:
            raise TemplateError("the rendered spec is invalid: " + "; ".join(errors))
    return resolved


def create_template_version(fleet: Fleet, fingerprint: str | None = None
                            ) -> TemplateVersion | None:
    """Freeze the fleet's template as ``v<generation>`` (idempotent) and make it current.

    ``fingerprint`` (a dependency change: new git commit or HTTP content, repos.dependencies)
    names it ``v<generation>-<first 8 hex of sha256(fingerprint)>`` instead, so the same
    template gets a new TemplateVersion whose git/http content is fetched afresh.
    Member devices that were up to date become OutOfDate in one UPDATE. Returns the
    TemplateVersion if it is new, None if it already existed.
    """
    name = f"v{fleet.generation}"
    if fingerprint:
        name += "-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:8]
    template = (fleet.spec or {}).get("template") or {}
    status = {key: value for key, value in (template.get("spec") or {}).items()
              if key in ("applications", "config", "os", "resources", "systemd", "updatePolicy")}
    try:
        with transaction.atomic():
            tv = TemplateVersion.objects.create(
                org_id=fleet.org_id, fleet=fleet, name=name, spec={"fleet": fleet.name},
                status=status, labels=(template.get("metadata") or {}).get("labels") or {})
    except IntegrityError:
        return None  # delivered twice: the first delivery did the work
    annotations = dict(fleet.annotations or {})
    annotations[TEMPLATE_VERSION] = name
    status_doc = dict(fleet.status or {})
    was_invalid = (get_condition(status_doc, "Valid") or {}).get("status") == "False"
    set_condition(status_doc, "Valid", True, "Valid")
    if was_invalid:
        record_event(fleet.org_id, "Fleet", fleet.name, "FleetValid", "Fleet is valid.",
                     actor=WORKER_ACTOR, component=WORKER_COMPONENT)
    Fleet.objects.filter(pk=fleet.pk).update(annotations=annotations, status=status_doc)
    fleet.annotations, fleet.status = annotations, status_doc
    strategy = "Batched" if _device_selection(fleet) else "None"
    record_event(fleet.org_id, "Fleet", fleet.name, "FleetRolloutStarted",
                 f"Fleet rollout of template version {name} started.", actor=WORKER_ACTOR,
                 component=WORKER_COMPONENT,
                 details={"detailType": "FleetRolloutStarted", "templateVersion": name,
                          "rolloutStrategy": strategy})
    mark_out_of_date(fleet)
    return tv


# A config provider that reads a Repository, and the Repository type it needs.
REPOSITORY_PROVIDERS = {"gitRef": "git", "httpRef": "http"}


def invalid_configuration(fleet: Fleet) -> str | None:
    """Why the fleet's template cannot be frozen, or None: every ``gitRef``/``httpRef`` must
    name a Repository of the organization, of the provider's type (service.md §1.3). One
    query, whatever the number of providers."""
    config = (((fleet.spec or {}).get("template") or {}).get("spec") or {}).get("config") or []
    refs = [(item.get("name"), kind, item[kind].get("repository"))
            for item in config if isinstance(item, dict)
            for kind in REPOSITORY_PROVIDERS if isinstance(item.get(kind), dict)]
    if not refs:
        return None
    types = dict(Repository.objects.restrict(fleet.org_id).filter(
        name__in={repo for _, _, repo in refs}).values_list("name", "spec__type"))
    errors = []
    for name, kind, repo in refs:
        if repo not in types:
            errors.append((name, f'failed fetching specified Repository definition {repo}: '
                                 f'Repository of name "{repo}" not found'))
        elif types[repo] != REPOSITORY_PROVIDERS[kind]:
            errors.append((name, f'Repository "{repo}" is of type "{types[repo]}", but '
                                 f'{kind} needs a {REPOSITORY_PROVIDERS[kind]} repository'))
    if not errors:
        return None
    return (f"{len(errors)} invalid configuration(s): {', '.join(n for n, _ in errors)}. "
            f"First error: {errors[0][1]}")


def mark_invalid(fleet: Fleet, message: str) -> None:
    """``Valid=False`` with the reason; no TemplateVersion is made and the fleet's devices
    keep the last valid one. ``FleetInvalid`` when the condition turns False."""
    status_doc = dict(fleet.status or {})
    was_false = (get_condition(status_doc, "Valid") or {}).get("status") == "False"
    if not set_condition(status_doc, "Valid", False, "Invalid", message):
        return
    Fleet.objects.filter(pk=fleet.pk).update(status=status_doc)
    fleet.status = status_doc
    if not was_false:
        record_event(fleet.org_id, "Fleet", fleet.name, "FleetInvalid",
                     f"Fleet is invalid: {message}", actor=WORKER_ACTOR, type=EventType.WARNING,
                     component=WORKER_COMPONENT)


def mark_out_of_date(fleet: Fleet) -> None:
    """Every member that was up to date is out of date now, in one statement however large
    the fleet is."""
    bulk.set_status_member(
        Device.objects.filter(org_id=fleet.org_id, owner=f"Fleet/{fleet.name}",
                              updated_status=DeviceUpdatedStatus.UP_TO_DATE),
        "updated", {"status": DeviceUpdatedStatus.OUT_OF_DATE, "info": MSG_FLEET_NOT_SCHEDULED})


def _device_selection(fleet: Fleet) -> dict | None:
    return ((fleet.spec or {}).get("rolloutPolicy") or {}).get("deviceSelection")


def current_template_version(fleet: Fleet) -> TemplateVersion | None:
    name = (fleet.annotations or {}).get(TEMPLATE_VERSION)
    if not name:
        return None
    return TemplateVersion.objects.filter(fleet=fleet, name=name).first()


def template_version_of(device) -> TemplateVersion | None:
    """The TemplateVersion a fleet member renders, or None for a standalone device: the scope
    in which git and HTTP content is frozen (registered with repos.providers)."""
    name, tv_name = fleet_name(device), (device.annotations or {}).get(TEMPLATE_VERSION)
    if name is None or not tv_name:
        return None
    cached = getattr(device, "_frozen_tv", None)
    if cached is not None and cached.name == tv_name:
        return cached
    tv = TemplateVersion.objects.filter(fleet__org_id=device.org_id, fleet__name=name,
                                        name=tv_name).first()
    device._frozen_tv = tv
    return tv


__all__ = ["TemplateError", "create_template_version", "current_template_version",
           "device_spec"]
