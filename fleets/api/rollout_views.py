"""TemplateVersions (read, delete) and the operator's rollout controls."""

from __future__ import annotations

from django.db.models import Q
from rest_framework.response import Response
from rest_framework.views import APIView

from fleets import rollout
from fleets.api.serializers import FleetSerializer
from fleets.models import Fleet, TemplateVersion
from flightctl.api.errors import API_VERSION, not_found, status_body
from flightctl.api.resources import ResourceViewSet, resolve_org
from flightctl.api.selectors import Field
from flightctl.api.serializers import timestamp


class TemplateVersionSerializer:
    kind = "TemplateVersion"

    def to_representation(self, tv: TemplateVersion) -> dict:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {"name": tv.name, "owner": f"Fleet/{tv.fleet.name}",
                         "labels": tv.labels or {},
                         "creationTimestamp": timestamp(tv.created_at)},
            "spec": {"fleet": tv.fleet.name},
            "status": {**tv.status, "updatedAt": timestamp(tv.created_at), "conditions": []},
        }


class TemplateVersionViewSet(ResourceViewSet):
    """``/fleets/{fleet}/templateversions``: newest first; created only by the service."""

    model = TemplateVersion
    serializer = TemplateVersionSerializer()
    ordering = ("created_at", "name")
    descending = True
    supports_labels = False
    common_fields = {
        "metadata.name": Field("name"),
        "metadata.creationTimestamp": Field("created_at", "timestamp"),
        "metadata.owner": Field(lambda op, values: _owner_q(op, values)),
    }

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.fleet_name = kwargs["fleet"]
        if not Fleet.objects.restrict(self.org_id).filter(name=self.fleet_name).exists():
            raise not_found("Fleet", self.fleet_name)

    def get_queryset(self):
        return TemplateVersion.objects.restrict(self.org_id).filter(
            fleet__name=self.fleet_name, fleet__org_id=self.org_id).select_related("fleet")

    def list(self, request, fleet: str):
        return super().list(request)

    def retrieve(self, request, fleet: str, name: str):
        return super().retrieve(request, name)

    def destroy(self, request, fleet: str, name: str):
        self.get_queryset().filter(name=name).delete()
        return Response(status_body(200, ""))


def _owner_q(op: str, values: list[str]):
    names = [v.split("/", 1)[1] for v in values if v.startswith("Fleet/")]
    if op in ("=", "in"):
        return Q(fleet__name__in=names)
    if op in ("!=", "notin"):
        return ~Q(fleet__name__in=names)
    return Q()


class RolloutActionView(APIView):
    """``POST /fleets/{name}/rollout/{pause|resume|approve}``; ``PUT .../approvalmethod``.

    Beyond the reference: operators pause and resume a rollout, and approve a batch that
    waits for approval or was suspended below its success threshold. The work is in
    :func:`fleets.rollout.operator_action`, which the web console calls too.
    """

    def post(self, request, name: str, action: str):
        fleet = rollout.operator_action(resolve_org(request), name, action)
        return Response(FleetSerializer().to_representation(fleet))

    def put(self, request, name: str, action: str):
        if action != "approvalmethod":
            raise not_found("rollout action", action)
        method = (request.data or {}).get("method") if isinstance(request.data, dict) else None
        fleet = rollout.operator_approval_method(resolve_org(request), name, method)
        return Response(FleetSerializer().to_representation(fleet))
