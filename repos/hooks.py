"""What Repository and ResourceSync writes set in motion (enqueued in their transaction)."""

from __future__ import annotations

from devices.hooks import request_render
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.api.resources import on_write
from flightctl.tasks import enqueue
from repos.choices import Reason
from repos.models import ConfigSnapshot


def _payload(obj) -> dict:
    return {"org_id": str(obj.org_id), "name": obj.name, "kind": type(obj).__name__}


@on_write("Repository")
def repository_written(repo, *, created: bool, changed: list[str]) -> None:
    if not (created or "spec" in changed):
        return
    # (Fleets that read it are validated again by the fleets app's own hook.)
    enqueue("repository-check", _payload(repo))
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
                     f"Referenced repository {repo.name} was updated.", actor=WORKER_ACTOR,
                     component=WORKER_COMPONENT,
                     details={"detailType": "ReferencedRepositoryUpdated",
                              "repository": repo.name})
        request_render(device)


@on_write("ResourceSync")
def resource_sync_written(rs, *, created: bool, changed: list[str]) -> None:
    if created or "spec" in changed:
        enqueue("resourcesync-run", _payload(rs))
