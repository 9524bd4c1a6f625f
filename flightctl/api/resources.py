"""The generic resource endpoint every kind uses: list, create, get, replace, patch, delete,
and the ``status`` subresource, with the reference's semantics (api.md §0.6, §5).

A kind's viewset sets ``model``, ``serializer`` and ``selectable_fields`` and overrides the
hooks (``check_create``, ``check_update``, ``after_write``, ``list_extras``) for its rules.

Write path, in one transaction: lock the row (``SELECT ... FOR UPDATE``), compare the client's
``resourceVersion`` if it sent one, apply, bump ``resourceVersion`` (and ``generation`` when the
spec changed), record the event, run the kind's ``after_write`` (which enqueues follow-up work in
the same transaction). A concurrent create of the same name surfaces as the unique constraint and
becomes a 409.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import jsonpatch
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import QueryDict
from rest_framework import viewsets
from rest_framework.response import Response

from flightctl.api import paging
from flightctl.api.errors import (
    MSG_CONFLICT,
    MSG_DUPLICATE,
    bad_request,
    conflict,
    not_found,
    status_body,
)
from flightctl.api.events import actor_of, record_event, resource_updated_details
from flightctl.api.orgs import resolve_org  # noqa: F401 - the apps' name for it
from flightctl.api.selectors import Field, SelectorError, field_selector_q, label_selector_q
from flightctl.api.serializers import Incoming, ResourceSerializer

PATCH_OPS = {"add", "replace", "remove", "test"}

#: Follow-up work per kind, registered by the apps that own it (see ``on_write``). Hooks run
#: inside the write's transaction, so whatever they enqueue commits with the write.
WRITE_HOOKS: dict[str, list] = {}
DELETE_HOOKS: dict[str, list] = {}


def on_write(kind: str):
    """Register ``hook(obj, *, created, changed)`` to run after every API write of ``kind``."""

    def register(hook):
        WRITE_HOOKS.setdefault(kind, []).append(hook)
        return hook

    return register


def on_delete(kind: str):
    """Register ``hook(obj)`` to run after every API delete of ``kind``."""

    def register(hook):
        DELETE_HOOKS.setdefault(kind, []).append(hook)
        return hook

    return register


def run_write_hooks(kind: str, obj, *, created: bool, changed: list[str]) -> None:
    for hook in WRITE_HOOKS.get(kind, ()):
        hook(obj, created=created, changed=changed)

COMMON_FIELDS = {
    "metadata.name": Field("name"),
    "metadata.owner": Field("owner"),
    "metadata.creationTimestamp": Field("created_at", "timestamp"),
}


def apply_json_patch(document: dict, operations) -> dict:
    """RFC 6902 on a copy of ``document``; 400 on a malformed patch or a failed ``test``."""
    if not isinstance(operations, list) or not operations:
        raise bad_request("API Error: a JSON Patch must be a non-empty array of operations")
    for op in operations:
        # Type-checked before looking anything up: ``op`` or ``path`` may be any JSON value.
        if (not isinstance(op, dict) or not isinstance(op.get("op"), str)
                or op["op"] not in PATCH_OPS or not isinstance(op.get("path"), str)
                or ("from" in op and not isinstance(op["from"], str))):
            raise bad_request(f"API Error: unsupported patch operation {op!r}")
    try:
        patched = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(document))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise bad_request(f"API Error: unable to apply patch: {exc}")
    if not isinstance(patched, dict):  # e.g. {"op": "replace", "path": "", "value": 1}
        raise bad_request("API Error: the patched document must be an object")
    return patched


class ResourceViewSet(viewsets.ViewSet):
    """Base for every kind's API. See the module docstring for the write path."""

    model = None
    serializer: ResourceSerializer = None
    selectable_fields: dict[str, Field] = {}
    #: attributes (DB columns) of the keyset sort, and whether it runs newest first
    ordering: tuple[str, ...] = ("name",)
    descending: bool = False
    supports_labels: bool = True
    common_fields: dict[str, Field] = COMMON_FIELDS

    # -- plumbing -------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        return self.serializer.kind

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.org_id = resolve_org(request)

    def get_queryset(self):
        """Access control lives here: a request only ever sees its organization's rows."""
        return self.model.objects.restrict(self.org_id)

    def get_object(self, name: str, *, lock: bool = False):
        queryset = self.get_queryset()
        if lock:
            queryset = queryset.select_for_update()
        obj = queryset.filter(name=name).first()
        if obj is None:
            raise not_found(self.kind, name)
        return obj

    def represent(self, obj) -> dict:
        return self.serializer.to_representation(obj)

    @property
    def actor(self) -> str:
        return actor_of(self.request.user)

    def event(self, obj_name: str, reason: str, message: str, **kwargs):
        return record_event(self.org_id, self.kind, obj_name, reason, message,
                            actor=self.actor, **kwargs)

    # -- hooks for kinds ------------------------------------------------------------------

    def check_create(self, incoming: Incoming) -> None:
        """Kind rules for a new object (raise ApiError)."""

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        """Kind rules for replacing ``instance``. Default: owned objects keep their spec."""
        if instance.owner and incoming.spec is not None and incoming.spec != instance.spec:
            raise conflict("updating the resource is not allowed because it has an owner")

    def check_delete(self, instance) -> None:
        """Kind rules for deleting ``instance``."""

    def new_object(self, incoming: Incoming):
        return self.model(
            org_id=self.org_id,
            name=incoming.name,
            labels=incoming.labels or {},
            spec=incoming.spec if incoming.spec is not None else {},
            status=self.initial_status(),
        )

    def initial_status(self) -> dict:
        return {}

    def after_write(self, obj, *, created: bool, changed: list[str]) -> None:
        """Runs in the write's transaction: the registered follow-up hooks of the kind."""
        run_write_hooks(self.kind, obj, created=created, changed=changed)

    def after_delete(self, obj) -> None:
        """Runs in the delete's transaction."""
        for hook in DELETE_HOOKS.get(self.kind, ()):
            hook(obj)

    def filter_list(self, queryset, request):
        """Kind-specific list query parameters."""
        return queryset

    def list_extras(self, queryset, items: list, request) -> dict:
        """Extra top-level members of the list body (e.g. a device summary)."""
        return {}

    # -- list -----------------------------------------------------------------------------

    def filtered_queryset(self, request):
        params = request.query_params
        queryset = self.selected(self.get_queryset(), params.get("labelSelector"),
                                 params.get("fieldSelector"))
        return self.filter_list(queryset, request)

    def selected(self, queryset, label_selector, field_selector, *, fields=None,
                 label_column: str = "labels"):
        """``queryset`` narrowed by a label and a field selector; ``fields`` (this kind's by
        default) whitelists the field names, ``label_column`` holds the labels. A bad selector
        is a 400."""
        try:
            if label_selector:
                if not self.supports_labels:
                    raise bad_request(f"labelSelector is not supported for {self.kind}")
                queryset = queryset.filter(label_selector_q(label_selector, label_column))
            if field_selector:
                if fields is None:
                    fields = {**self.common_fields, **self.selectable_fields}
                queryset = queryset.filter(field_selector_q(field_selector, fields))
        except SelectorError as exc:
            raise bad_request(str(exc))
        return queryset

    def keyset_filter(self, values: list[str]) -> Q:
        """Rows at or after the continue token's key in the list order."""
        op = "lte" if self.descending else "gte"
        strict = "lt" if self.descending else "gt"
        condition = Q()
        # (a, b) >= (x, y)  ==  a > x OR (a = x AND b >= y)
        for index in range(len(self.ordering) - 1, -1, -1):
            column = self.ordering[index]
            value = values[index]
            here = Q(**{f"{column}__{op if index == len(self.ordering) - 1 else strict}": value})
            condition = here if index == len(self.ordering) - 1 else (
                here | (Q(**{column: value}) & condition)
            )
        return condition

    def sort_key(self, obj) -> list[str]:
        key = []
        for column in self.ordering:
            value = getattr(obj, column)
            key.append(value.isoformat() if hasattr(value, "isoformat") else str(value))
        return key

    def list(self, request):
        limit = paging.parse_limit(request.query_params.get("limit"))
        queryset = self.filtered_queryset(request)
        token = request.query_params.get("continue")
        if token:
            queryset = queryset.filter(
                self.keyset_filter(paging.decode_continue(token, len(self.ordering)))
            )
        order = [f"-{c}" if self.descending else c for c in self.ordering]
        rows = list(queryset.order_by(*order)[: limit + 1])
        metadata: dict = {}
        if len(rows) > limit:
            # Counting the rest is one indexed query; the reference returns this number.
            remaining = queryset.filter(
                self.keyset_filter(self.sort_key(rows[limit]))
            ).count()
            metadata = {
                "continue": paging.encode_continue(self.sort_key(rows[limit]), remaining),
                "remainingItemCount": remaining,
            }
            rows = rows[:limit]
        items = [self.represent(row) for row in rows]
        body = {
            "apiVersion": "flightctl.io/v1beta1",
            "kind": f"{self.kind}List",
            "metadata": metadata,
            "items": items,
        }
        body.update(self.list_extras(queryset, rows, request))
        return Response(body)

    # -- single objects -------------------------------------------------------------------

    def retrieve(self, request, name: str):
        return Response(self.represent(self.get_object(name)))

    def create(self, request):
        return Response(self.represent(self.create_object(request.data)), status=201)

    def update(self, request, name: str):
        obj, created = self.replace_object(name, request.data)
        return Response(self.represent(obj), status=201 if created else 200)

    def partial_update(self, request, name: str):
        # Read, patch and write under the row lock: a write in between (the server's own, e.g.
        # a fleet adopting the device) would otherwise turn the resourceVersion the patched
        # document carries into a 409 the client never asked for.
        with transaction.atomic():
            current = self.represent(self.get_object(name, lock=True))
            patched = apply_json_patch(current, request.data)
            self._check_immutable(current, patched, ("apiVersion", "kind", "status"))
            if (patched.get("metadata") or {}).get("name") != name:
                raise bad_request("metadata.name is immutable")
            obj, created = self.replace_object(name, patched, patch=True)
        return Response(self.represent(obj), status=201 if created else 200)

    def destroy(self, request, name: str):
        self.delete_object(name)
        return Response(status_body(200, ""), status=200)

    # -- the write path as calls (the API's handlers above, and the web console) -------------

    @classmethod
    def for_user(cls, user, org_id) -> ResourceViewSet:
        """This kind's endpoint bound to ``user`` in ``org_id`` instead of an HTTP request, so
        other front ends (the web console) write through the very same rules, events (with
        the user as actor) and follow-up hooks. The caller has checked the user's role."""
        view = cls()
        view.request = SimpleNamespace(user=user, query_params=QueryDict(), data=None)
        view.org_id = org_id
        view.format_kwarg = None
        return view

    def create_object(self, document):
        """Create from an API document (validated as ``POST`` does); ApiError if refused."""
        incoming = self.serializer.parse(document)
        try:
            with transaction.atomic():
                if self.get_queryset().filter(name=incoming.name).exists():
                    raise conflict(MSG_DUPLICATE)
                return self._create(incoming)
        except IntegrityError:
            raise conflict(MSG_DUPLICATE)

    def replace_object(self, name: str, document, *, patch: bool = False):
        """Replace (or create) ``name`` from an API document as ``PUT`` does; returns
        ``(object, created)``."""
        incoming = self.serializer.parse(document, path_name=name)
        return self._replace(name, incoming, patch=patch)

    def delete_object(self, name: str) -> None:
        with transaction.atomic():
            obj = self.get_queryset().select_for_update().filter(name=name).first()
            if obj is not None:
                self.check_delete(obj)
                self.after_delete(obj)
                obj.delete()
                self.event(name, "ResourceDeleted", f"{self.kind} was deleted successfully.")

    # -- status subresource ---------------------------------------------------------------

    def status_retrieve(self, request, name: str):
        return self.retrieve(request, name)

    def status_update(self, request, name: str):
        incoming = self.serializer.parse(request.data, path_name=name, for_status=True)
        return self._write_status(name, incoming.status or {}, incoming.resource_version)

    def status_patch(self, request, name: str):
        current = self.represent(self.get_object(name))
        patched = apply_json_patch(current, request.data)
        self._check_immutable(current, patched, ("apiVersion", "kind", "metadata", "spec"))
        incoming = self.serializer.parse(patched, path_name=name, for_status=True)
        return self._write_status(name, incoming.status or {}, incoming.resource_version)

    def _write_status(self, name: str, status: dict, resource_version: int | None):
        with transaction.atomic():
            obj = self.get_object(name, lock=True)
            if resource_version is not None and resource_version != obj.resource_version:
                raise conflict(MSG_CONFLICT)
            obj.status = self.merge_status(obj, status)
            obj.resource_version = F("resource_version") + 1
            obj.save(update_fields=["status", "resource_version", "updated_at"])
            obj.refresh_from_db()
        return Response(self.represent(obj))

    def merge_status(self, obj, status: dict) -> dict:
        return status

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _check_immutable(before: dict, after: dict, keys: tuple[str, ...]) -> None:
        for key in keys:
            if before.get(key) != after.get(key):
                raise bad_request(f"{key} is immutable")

    def _create(self, incoming: Incoming):
        self.check_create(incoming)
        obj = self.new_object(incoming)
        obj.save(force_insert=True)
        self.event(obj.name, "ResourceCreated", f"{self.kind} was created successfully.")
        self.after_write(obj, created=True, changed=["spec", "labels"])
        return obj

    def _replace(self, name: str, incoming: Incoming, *, patch: bool):
        try:
            with transaction.atomic():
                obj = self.get_queryset().select_for_update().filter(name=name).first()
                if obj is None:
                    if incoming.resource_version is not None:
                        raise conflict(MSG_CONFLICT)
                    return self._create(incoming), True
                if (
                    incoming.resource_version is not None
                    and incoming.resource_version != obj.resource_version
                ):
                    raise conflict(MSG_CONFLICT)
                self.check_update(obj, incoming, patch=patch)
                changed = self.apply_changes(obj, incoming)
                if changed:
                    obj.resource_version += 1
                    obj.save()
                    self.event(
                        obj.name,
                        "ResourceUpdated",
                        f"{self.kind} was updated successfully.",
                        details=resource_updated_details(changed),
                    )
                    self.after_write(obj, created=False, changed=changed)
        except IntegrityError:
            raise conflict(MSG_DUPLICATE)
        return obj, False

    def apply_changes(self, obj, incoming: Incoming) -> list[str]:
        """Copy what the client may set onto ``obj``; return the names of changed fields."""
        changed = []
        if incoming.labels is not None and incoming.labels != obj.labels:
            obj.labels = incoming.labels
            changed.append("labels")
        spec = incoming.spec if incoming.spec is not None else {}
        if spec != obj.spec:
            changed.extend(self.spec_changes(obj.spec, spec))
            obj.spec = spec
            obj.generation += 1
        return changed

    def spec_changes(self, old: dict, new: dict) -> list[str]:
        return ["spec"]
