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

from django.db import IntegrityError, connection, transaction

from devices.models import Device
from fleets import choices
from fleets.conditions import set_condition
from fleets.models import Fleet, TemplateVersion
from fleets.templating import TemplateError, has_placeholders, render
from flightctl.api.events import record_event

ACTOR = "service:flightctl-worker"


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


def device_spec(template_spec: dict, device: Device) -> dict:
    """The template resolved for one device; raises TemplateError (e.g. a missing label)."""
    return _resolve(template_spec or {}, device.name, device.labels or {})


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
    annotations[choices.FLEET_TV] = name
    status_doc = dict(fleet.status or {})
    set_condition(status_doc, "Valid", True, "Valid")
    Fleet.objects.filter(pk=fleet.pk).update(annotations=annotations, status=status_doc)
    fleet.annotations, fleet.status = annotations, status_doc
    strategy = "Batched" if _device_selection(fleet) else "None"
    record_event(fleet.org_id, "Fleet", fleet.name, "FleetRolloutStarted",
                 f"Fleet rollout of template version {name} started.", actor=ACTOR,
                 component="flightctl-worker",
                 details={"detailType": "FleetRolloutStarted", "templateVersion": name,
                          "rolloutStrategy": strategy})
    mark_out_of_date(fleet)
    return tv


def mark_out_of_date(fleet: Fleet) -> None:
    from devices.health import MSG_FLEET_NOT_SCHEDULED

    with connection.cursor() as cursor:
        # jsonb_set on every member row in one statement: a new template makes the whole
        # fleet out of date at once, however large it is.
        cursor.execute(
            """
            UPDATE devices_device SET status = jsonb_set(status, '{updated}',
                jsonb_build_object('status', 'OutOfDate', 'info', %s::text))
            WHERE org_id = %s AND owner = %s AND status -> 'updated' ->> 'status' = 'UpToDate'
            """,
            [MSG_FLEET_NOT_SCHEDULED, fleet.org_id, f"Fleet/{fleet.name}"],
        )


def _device_selection(fleet: Fleet) -> dict | None:
    return ((fleet.spec or {}).get("rolloutPolicy") or {}).get("deviceSelection")


def current_template_version(fleet: Fleet) -> TemplateVersion | None:
    name = (fleet.annotations or {}).get(choices.FLEET_TV)
    if not name:
        return None
    return TemplateVersion.objects.filter(fleet=fleet, name=name).first()


__all__ = ["TemplateError", "create_template_version", "current_template_version",
           "device_spec"]
