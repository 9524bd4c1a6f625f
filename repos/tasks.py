"""Task handlers and periodic jobs of the repos app (registered with flightctl.tasks).

| task / job | when | does |
|---|---|---|
| `repository-check` | repository created or its spec changed | the accessibility test |
| `resourcesync-run` | ResourceSync created or its spec changed | one sync run (repos.sync) |
| `repository-checks` (periodic) | `repository_check_interval` | a check of every repository |
| `resource-sync` (periodic) | `resource_sync_interval` | a run of every ResourceSync |
| `dependency-sync` (periodic) | `dependency_sync_interval` | repos.dependencies |

Handlers are idempotent: a test writes the condition only when it changed, a sync run skips a
commit and generation it already synced.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from flightctl.api.conditions import get_condition, set_condition
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT, record_event
from flightctl.tasks import enqueue, handler, periodic, setting_interval
from repos import access, dependencies, sync
from repos.choices import Condition, Reason
from repos.crypto import SecretError, unseal
from repos.models import Repository, ResourceSync


def _payload(obj) -> dict:
    return {"org_id": str(obj.org_id), "name": obj.name, "kind": type(obj).__name__}


@handler("repository-check")
def check_repository(payload: dict) -> None:
    repo = Repository.objects.restrict(payload["org_id"]).filter(name=payload["name"]).first()
    if repo is None:
        return
    # The test talks to the network: it runs before the row is locked, and the result is
    # written only if the spec is still the one that was tested.
    try:
        access.check(unseal(repo.spec))
        ok, message = True, "Accessible"
    except (access.AccessError, SecretError) as exc:
        ok, message = False, str(exc)
    with transaction.atomic():
        current = Repository.objects.select_for_update().filter(
            pk=repo.pk, generation=repo.generation).first()
        if current is None:
            return
        status = dict(current.status or {})
        previous = get_condition(status, Condition.ACCESSIBLE)
        was = previous.get("status") if previous else None
        if not set_condition(status, Condition.ACCESSIBLE, ok,
                             "Accessible" if ok else "Inaccessible", message):
            return
        Repository.objects.filter(pk=current.pk).update(
            status=status, resource_version=F("resource_version") + 1)
        if was != ("True" if ok else "False"):
            record_event(current.org_id, "Repository", current.name,
                         Reason.REPOSITORY_ACCESSIBLE if ok else Reason.REPOSITORY_INACCESSIBLE,
                         "Repository is accessible" if ok else
                         f"Repository is inaccessible: {message}",
                         actor=WORKER_ACTOR, component=WORKER_COMPONENT,
                         type="Normal" if ok else "Warning")


@handler("resourcesync-run")
def run_resource_sync(payload: dict) -> None:
    sync.run(payload["org_id"], payload["name"])


@periodic("repository-checks", setting_interval("repository_check_interval"))
def check_all_repositories() -> None:
    for repo in Repository.objects.only("org_id", "name").order_by("pk"):
        enqueue("repository-check", _payload(repo))


@periodic("resource-sync", setting_interval("resource_sync_interval"))
def sync_all_resource_syncs() -> None:
    for rs in ResourceSync.objects.only("org_id", "name").order_by("pk"):
        enqueue("resourcesync-run", _payload(rs))


@periodic("dependency-sync", setting_interval("dependency_sync_interval"))
def sync_dependencies() -> None:
    dependencies.sync_all()
