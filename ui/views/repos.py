"""Repositories and ResourceSyncs: lists and pages with their conditions (accessibility, sync),
the last synced commit and errors, and the YAML editor. Secrets are never shown: pages show the
API's representation, which masks them."""

from __future__ import annotations

from flightctl.models import Event
from repos.api.views import RepositoryViewSet, ResourceSyncViewSet
from ui import access
from ui.views.common import endpoint, found, keyset_page, render, selected, to_yaml
from ui.views.yaml_edit import edit_resource

KINDS = {
    "repository": (RepositoryViewSet, "repositories", "Repository", "Repositories"),
    "resourcesync": (ResourceSyncViewSet, "resourcesyncs", "ResourceSync", "Resource syncs"),
}


def _list(request, key: str):
    viewset, resource, kind, title = KINDS[key]
    access.require(request, resource, "list")
    view = endpoint(request, viewset)
    queryset, error = selected(request, view, view.get_queryset())
    rows, next_token, page_error = keyset_page(request, view, queryset)
    for obj in rows:
        obj.body = view.represent(obj)
        obj.conditions = obj.body["status"].get("conditions") or []
    return render(request, "ui/resource_list.html", {
        "objects": rows, "error": error or page_error, "next_token": next_token, "key": key,
        "kind": kind, "label_selector": request.GET.get("labelSelector", ""),
        "field_selector": request.GET.get("fieldSelector", ""),
        "can_create": access.can(request, resource, "create"),
    }, title=title)


def _page(request, key: str, name: str):
    viewset, resource, kind, _ = KINDS[key]
    access.require(request, resource, "get")
    view = endpoint(request, viewset)
    obj = found(view, name)
    body = view.represent(obj)
    return render(request, "ui/resource.html", {
        "object": obj, "body": body, "key": key, "kind": kind,
        "spec_yaml": to_yaml(body.get("spec")),
        "conditions": body["status"].get("conditions") or [],
        "observed_commit": body["status"].get("observedCommit"),
        "events": list(Event.objects.restrict(obj.org_id).filter(
            involved_kind=kind, involved_name=name).order_by("-created_at", "-name")[:20]),
        "can_edit": access.can(request, resource, "update") and not obj.owner,
    }, title=f"{kind} {name}")


def repository_list(request):
    return _list(request, "repository")


def repository_page(request, name: str):
    return _page(request, "repository", name)


def repository_edit(request, name: str | None = None):
    return edit_resource(request, RepositoryViewSet, name, resource="repositories",
                         kind="Repository", page="admin:ui-repository", title="repository",
                         example=REPOSITORY_EXAMPLE)


def resourcesync_list(request):
    return _list(request, "resourcesync")


def resourcesync_page(request, name: str):
    return _page(request, "resourcesync", name)


def resourcesync_edit(request, name: str | None = None):
    return edit_resource(request, ResourceSyncViewSet, name, resource="resourcesyncs",
                         kind="ResourceSync", page="admin:ui-resourcesync",
                         title="resource sync", example=RESOURCESYNC_EXAMPLE)


REPOSITORY_EXAMPLE = """apiVersion: flightctl.io/v1beta1
kind: Repository
metadata:
  name: my-repository
spec:
  type: git
  url: https://github.com/example/config.git
"""

RESOURCESYNC_EXAMPLE = """apiVersion: flightctl.io/v1beta1
kind: ResourceSync
metadata:
  name: my-sync
spec:
  repository: my-repository
  targetRevision: main
  path: /fleets
"""
