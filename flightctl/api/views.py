"""Framework endpoints: version, health, auth helpers, organizations, events, OpenAPI."""

from __future__ import annotations

from django.db import connection
from django.http import JsonResponse
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from flightctl import __version__
from flightctl.api import oidc, orgs, providers, rbac
from flightctl.api.errors import API_VERSION, ApiError, bad_request, status_body
from flightctl.api.resources import ResourceViewSet
from flightctl.api.selectors import Field
from flightctl.api.serializers import timestamp
from flightctl.models import Event, Organization


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means "not ready"
        return JsonResponse({"status": "unavailable", "error": str(exc).splitlines()[0]},
                            status=503)
    return JsonResponse({"status": "ok"})


class VersionView(APIView):
    def get(self, request):
        return Response({"version": __version__})


class AuthConfigView(APIView):
    """Public: tells clients how to log in: every enabled provider (flightctl/api/providers.py),
    secrets left out."""

    permission_classes = [AllowAny]
    authentication_classes = []

    def get(self, request):
        found = providers.enabled()
        # The default is the configured issuer, else the first provider created through the
        # API, else the password issuer: the one a browser login most likely wants.
        ranked = sorted(found, key=lambda p: (p.name == providers.LOCAL_NAME, not p.static))
        return Response({
            "apiVersion": API_VERSION,
            "providers": [oidc.represent(p) for p in found],
            "defaultProvider": ranked[0].name if ranked else "",
            "organizationsEnabled": True,
        })


class AuthValidateView(APIView):
    def get(self, request):
        return Response(status_body(200, ""))


class UserInfoView(APIView):
    def get(self, request):
        user = request.user
        return Response({
            "sub": str(user.pk),
            "preferred_username": user.get_username().partition(":")[2] or user.get_username(),
            "name": user.get_full_name() or user.get_username(),
            "organizations": [_organization(org) for org in orgs.visible_orgs(user)[:100]],
        })


class PermissionsView(APIView):
    """What the caller's role allows (flightctl/api/rbac.py)."""

    def get(self, request):
        try:
            roles = orgs.roles_in(request.user, orgs.resolve_org(request))
        except ApiError:  # no organization to speak of: the roles held in all of them
            roles = rbac.global_roles(request.user)
        return Response({"permissions": rbac.permissions(roles)})


def _organization(org: Organization) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "Organization",
        "metadata": {"name": str(org.id)},
        "spec": {"displayName": org.display_name, "externalId": org.external_id},
    }


class OrganizationListView(APIView):
    def get(self, request):
        found = orgs.visible_orgs(request.user)[:1000]
        return Response({
            "apiVersion": API_VERSION,
            "kind": "OrganizationList",
            "metadata": {},
            "items": [_organization(org) for org in found],
        })


class EventSerializer:
    kind = "Event"

    def to_representation(self, event: Event) -> dict:
        body = {
            "apiVersion": API_VERSION,
            "kind": "Event",
            "metadata": {"name": event.name, "creationTimestamp": timestamp(event.created_at)},
            "involvedObject": {"kind": event.involved_kind, "name": event.involved_name},
            "reason": event.reason,
            "message": event.message,
            "type": event.type,
            "source": {"component": event.source_component},
            "actor": event.actor,
        }
        if event.details:
            body["details"] = event.details
        return body


class EventViewSet(ResourceViewSet):
    """``GET /events``: newest first by default, ``order=asc`` for oldest first."""

    model = Event
    serializer = EventSerializer()
    ordering = ("created_at", "name")
    descending = True
    supports_labels = False
    common_fields = {
        "metadata.name": Field("name"),
        "metadata.creationTimestamp": Field("created_at", "timestamp"),
    }
    selectable_fields = {
        "reason": Field("reason"),
        "type": Field("type"),
        "actor": Field("actor"),
        "involvedObject.kind": Field("involved_kind"),
        "involvedObject.name": Field("involved_name"),
    }

    def list(self, request):
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise bad_request(f"API Error: order must be 'asc' or 'desc', not {order!r}")
        self.descending = order == "desc"
        return super().list(request)
