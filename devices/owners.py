"""The resource that owns fleet members, registered by the app that defines it.

A device may be owned (``owner: Fleet/<name>``) by a resource of a higher layer, which this app
never imports (docs/architecture.md, "Layers"). That app registers its model here when Django is
ready (fleets.hooks); devices then read the owner through the framework's resource columns only
(``org_id``, ``name``, ``annotations``):

* the TemplateVersion the owner currently rolls out, which a device must have rendered to be
  ``UpToDate`` (devices.health);
* the owner's annotations, whose application lifecycle defaults its members inherit when they
  are rendered (devices.rendering);
* the adoption pass, which gives new and relabelled devices their owner (the ``device-owner``
  task, devices.tasks).

Without a registered owner every device counts as standalone.
"""

from __future__ import annotations

from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Substr

from devices.summary import FLEET_OWNER_PREFIX
from flightctl.api.annotations import TEMPLATE_VERSION

_owner_model = None
_adoption = None


def register_fleet_model(model, adopt_pending) -> None:
    """Make ``model`` (a :class:`flightctl.models.Resource`) the owner behind ``Fleet/``, and
    ``adopt_pending(org_id)`` the pass that gives every device of the organization flagged
    ``owner_pending`` its owner (and its spec and first render)."""
    global _owner_model, _adoption
    _owner_model, _adoption = model, adopt_pending


def adopt_pending(org_id) -> int:
    """Run the registered adoption pass; how many devices it adopted."""
    return _adoption(org_id) if _adoption is not None else 0


def fleet_name(device) -> str | None:
    owner = device.owner or ""
    return owner[len(FLEET_OWNER_PREFIX):] if owner.startswith(FLEET_OWNER_PREFIX) else None


def template_version_subquery():
    """The owning fleet's current TemplateVersion name, as a correlated subquery on a device
    queryset: one statement loads a page of devices with their fleets' versions. It looks the
    fleet up by its unique (org_id, name) index."""
    if _owner_model is None:
        return Value(None, output_field=CharField())
    fleets = _owner_model.objects.filter(
        org_id=OuterRef("org_id"), name=Substr(OuterRef("owner"), len(FLEET_OWNER_PREFIX) + 1))
    return Subquery(fleets.values_list(
        KeyTextTransform(TEMPLATE_VERSION, "annotations"), flat=True)[:1])


def template_version_of(device) -> str | None:
    """One device's fleet TemplateVersion: a query only when it is fleet-owned."""
    name = fleet_name(device)
    if name is None or _owner_model is None:
        return None
    annotations = _owner_model.objects.filter(org_id=device.org_id, name=name).values_list(
        "annotations", flat=True).first()
    return (annotations or {}).get(TEMPLATE_VERSION)


def attach_fleet_annotations(org_id, devices: list) -> None:
    """Set ``fleet_annotations`` on each of ``devices`` (one organization) for the renderer:
    its fleet's annotations, ``{}`` for a standalone device. One query."""
    names = {name for name in map(fleet_name, devices) if name is not None}
    annotations = {}
    if names and _owner_model is not None:
        annotations = dict(_owner_model.objects.restrict(org_id).filter(name__in=names)
                           .values_list("name", "annotations"))
    for device in devices:
        name = fleet_name(device)
        device.fleet_annotations = (annotations.get(name) or {}) if name is not None else {}
