"""What Repository and ResourceSync writes set in motion (enqueued in their transaction)."""

from __future__ import annotations

from django.db.models import Q

from flightctl.api.events import record_event
from flightctl.api.resources import on_write
from flightctl.tasks import enqueue
from repos.choices import ACTOR, COMPONENT, Reason
from repos.models import ConfigSnapshot


def _payload(obj) -> dict:
    return {"org_id": str(obj.org_id), "name": obj.name, "kind": type(obj).__name__}


@on_write("Repository")
def repository_written(repo, *, created: bool, changed: list[str]) -> None:
    if not (created or "spec" in changed):
        return
    enqueue("repository-check", _payload(repo))
    _revalidate_fleets(repo)
    if created:
        return
    # Standalone devices fetch on every render: new credentials or a new URL apply now.
    # (Fleet members keep the content frozen for their TemplateVersion.)
    devices = ConfigSnapshot.objects.filter(
        org_id=repo.org_id, repository=repo.name, device__isnull=False).select_related(
        "device").order_by("device_id").distinct("device_id")
    for snapshot in devices:
        device = snapshot.device
        record_event(device.org_id, "Device", device.name, Reason.REFERENCED_REPOSITORY_UPDATED,
                     f"Referenced repository {repo.name} was updated.", actor=ACTOR,
                     component=COMPONENT, details={"detailType": "ReferencedRepositoryUpdated",
                                                   "repository": repo.name})
        enqueue("device-render", _payload(device))


def _revalidate_fleets(repo) -> None:
    """Fleets whose template reads this Repository are validated again: one that was invalid
    for want of it gets its TemplateVersion now (a valid one finds its TemplateVersion already
    made and does nothing)."""
    from fleets.models import Fleet
    from fleets.templates import REPOSITORY_PROVIDERS

    uses = Q()
    for kind in REPOSITORY_PROVIDERS:
        uses |= Q(spec__contains={"template": {"spec": {"config": [
            {kind: {"repository": repo.name}}]}}})
    for fleet in Fleet.objects.restrict(repo.org_id).filter(uses).only("org_id", "name"):
        record_event(fleet.org_id, "Fleet", fleet.name, Reason.REFERENCED_REPOSITORY_UPDATED,
                     f"Referenced repository {repo.name} was updated.", actor=ACTOR,
                     component=COMPONENT, details={"detailType": "ReferencedRepositoryUpdated",
                                                   "repository": repo.name})
        enqueue("fleet-validate", _payload(fleet))


@on_write("ResourceSync")
def resource_sync_written(rs, *, created: bool, changed: list[str]) -> None:
    if created or "spec" in changed:
        enqueue("resourcesync-run", _payload(rs))
