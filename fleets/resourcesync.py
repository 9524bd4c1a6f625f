"""The Fleet side of a ResourceSync (repos.sync): fleets described in git, applied and pruned.

The repos app runs the sync (fetch, parse, conditions) and hands the Fleet documents it found
to the functions registered here (fleets.hooks): each document is checked with the API's own
serializer, and the fleets owned by the ResourceSync (``owner: ResourceSync/<name>``) are
created, updated and deleted to match, each write with the same events and follow-up hooks as
an API write. Fields listed in ``resource_sync_ignore`` keep the server's values.
"""

from __future__ import annotations

import jsonpatch
import jsonpointer
from django.conf import settings
from django.db.models import F

from fleets.api.serializers import FleetSerializer
from fleets.models import Fleet
from flightctl.api.events import record_event, resource_updated_details
from flightctl.api.resources import DELETE_HOOKS, run_write_hooks
from repos.models import ResourceSync
from repos.sync import SyncedKind, SyncError, owner_of

_MISSING = object()


def parse(document: dict):
    """One Fleet document, checked as the API checks it (raises ApiError)."""
    return FleetSerializer().parse(document)


def _carry_ignored(existing: Fleet, incoming) -> None:
    """Fields git must not manage keep the server's values."""
    current = FleetSerializer().to_representation(existing)
    wanted = {"metadata": {"labels": incoming.labels or {}}, "spec": incoming.spec}
    for pointer in settings.FLIGHTCTL.resource_sync_ignore:
        if not pointer.startswith(("/spec", "/metadata/labels")):
            continue
        value = jsonpointer.resolve_pointer(current, pointer, _MISSING)
        if value is not _MISSING:
            wanted = jsonpatch.apply_patch(wanted, [{"op": "add", "path": pointer,
                                                     "value": value}])
    incoming.labels, incoming.spec = wanted["metadata"]["labels"], wanted["spec"]


def _spec_changes(old: dict, new: dict) -> list[str]:
    changed = [f"spec.{part}" for part in ("selector", "template")
               if old.get(part) != new.get(part)]
    return changed or ["spec"]


def apply(rs: ResourceSync, fleets: dict) -> int:
    """Create, update and prune the fleets of ``rs``; returns how many changed."""
    owner = owner_of(rs.name)
    actor = f"service:resourcesync/{rs.name}"
    names = sorted(fleets)
    existing = {f.name: f for f in Fleet.objects.restrict(rs.org_id).filter(
        name__in=names).select_for_update().order_by("name")}
    taken = [f"{n} (owned by {f.owner})" for n, f in existing.items()
             if f.owner and f.owner != owner]
    if taken:
        raise SyncError("fleets owned by another resource: " + ", ".join(taken))
    changes = 0
    for name in names:
        _file, incoming = fleets[name]
        fleet = existing.get(name)
        if fleet is None:
            fleet = Fleet(org_id=rs.org_id, name=name, labels=incoming.labels or {},
                          spec=incoming.spec, owner=owner, status={"conditions": []})
            fleet.save(force_insert=True)
            record_event(rs.org_id, "Fleet", name, "ResourceCreated",
                         "Fleet was created successfully.", actor=actor)
            run_write_hooks("Fleet", fleet, created=True, changed=["spec", "labels"])
            changes += 1
            continue
        _carry_ignored(fleet, incoming)
        changed: list[str] = []
        previous_owner = fleet.owner
        if (incoming.labels or {}) != (fleet.labels or {}):
            fleet.labels = incoming.labels or {}
            changed.append("labels")
        if incoming.spec != fleet.spec:
            changed.extend(_spec_changes(fleet.spec or {}, incoming.spec))
            fleet.spec = incoming.spec
            fleet.generation += 1
        if fleet.owner != owner:
            fleet.owner = owner
            changed.append("owner")
        if not changed:
            continue
        fleet.resource_version += 1
        fleet.save()
        record_event(rs.org_id, "Fleet", name, "ResourceUpdated",
                     "Fleet was updated successfully.", actor=actor,
                     details=resource_updated_details(changed, previous_owner, owner))
        run_write_hooks("Fleet", fleet, created=False, changed=changed)
        changes += 1
    gone = Fleet.objects.restrict(rs.org_id).filter(owner=owner).exclude(
        name__in=names).select_for_update()
    for fleet in gone:
        for hook in DELETE_HOOKS.get("Fleet", ()):
            hook(fleet)
        fleet.delete()
        record_event(rs.org_id, "Fleet", fleet.name, "ResourceDeleted",
                     "Fleet was deleted successfully.", actor=actor)
        changes += 1
    return changes


def release(rs: ResourceSync, actor: str) -> int:
    """A deleted ResourceSync leaves its fleets in place, owned by nobody."""
    owner = owner_of(rs.name)
    fleets = list(Fleet.objects.restrict(rs.org_id).filter(owner=owner).select_for_update())
    for fleet in fleets:
        record_event(rs.org_id, "Fleet", fleet.name, "ResourceUpdated",
                     "Fleet was updated successfully.", actor=actor,
                     details=resource_updated_details(["owner"], owner, None))
    Fleet.objects.filter(pk__in=[f.pk for f in fleets]).update(
        owner=None, resource_version=F("resource_version") + 1)
    return len(fleets)


SYNCED_FLEETS = SyncedKind(parse=parse, apply=apply, release=release)
