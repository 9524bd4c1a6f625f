"""What fleets register with the layers below them, when Django is ready (fleets.apps).

* Follow-up work of writes, enqueued in the write's transaction: a Fleet's (selector matching,
  validation, rollout), a Repository's (the fleets that read it are validated again).
* To the devices app: the Fleet model, the owner behind ``owner: Fleet/<name>``, and the
  adoption pass of new and relabelled devices (devices.owners).
* To the repos app: which TemplateVersion a member renders (the scope of frozen git and HTTP
  content), the renewal of a TemplateVersion whose dependencies changed, and how Fleets are
  synced from git (repos.providers, repos.dependencies, repos.sync).
"""

from __future__ import annotations

from django.db.models import Q

from devices.owners import register_fleet_model
from fleets import resourcesync, tasks
from fleets.models import Fleet
from fleets.templates import REPOSITORY_PROVIDERS, template_version_of
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.api.resources import on_delete, on_write
from flightctl.tasks import enqueue
from repos import dependencies, providers, sync
from repos.choices import Reason


def _payload(obj) -> dict:
    return {"org_id": str(obj.org_id), "name": obj.name, "kind": type(obj).__name__}


@on_write("Fleet")
def fleet_written(fleet, *, created: bool, changed: list[str]) -> None:
    if created or "spec.selector" in changed:
        enqueue("fleet-selector", _payload(fleet))
    if created or "spec.template" in changed:
        enqueue("fleet-validate", _payload(fleet))
    elif "spec" in changed:  # the rollout policy changed: re-evaluate the rollout now
        enqueue("fleet-progress", _payload(fleet))


@on_delete("Fleet")
def fleet_deleted(fleet) -> None:
    enqueue("fleet-selector", _payload(fleet))


@on_write("Repository")
def repository_written(repo, *, created: bool, changed: list[str]) -> None:
    """Fleets whose template reads the Repository are validated again: one that was invalid
    for want of it gets its TemplateVersion now (a valid one finds its TemplateVersion already
    made and does nothing)."""
    if not (created or "spec" in changed):
        return
    uses = Q()
    for kind in REPOSITORY_PROVIDERS:
        uses |= Q(spec__contains={"template": {"spec": {"config": [
            {kind: {"repository": repo.name}}]}}})
    for fleet in Fleet.objects.restrict(repo.org_id).filter(uses).only("org_id", "name"):
        record_event(fleet.org_id, "Fleet", fleet.name, Reason.REFERENCED_REPOSITORY_UPDATED,
                     f"Referenced repository {repo.name} was updated.", actor=WORKER_ACTOR,
                     component=WORKER_COMPONENT,
                     details={"detailType": "ReferencedRepositoryUpdated",
                              "repository": repo.name})
        enqueue("fleet-validate", _payload(fleet))


register_fleet_model(Fleet, tasks.adopt_pending)
providers.register_freeze_scope(template_version_of)
dependencies.on_renewal(tasks.renew_template_version)
sync.register_synced_kind("Fleet", resourcesync.SYNCED_FLEETS)
