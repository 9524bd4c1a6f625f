"""The Repository and ResourceSync APIs: the shared resource endpoint plus their rules."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from flightctl.api.errors import bad_request, not_found
from flightctl.api.resources import ResourceViewSet, resolve_org
from flightctl.api.serializers import Incoming
from repos import access, crypto, guards, sync
from repos.api.serializers import RepositorySerializer, ResourceSyncSerializer
from repos.choices import RepoType
from repos.filtersets import REPOSITORY_FIELDS, RESOURCE_SYNC_FIELDS
from repos.models import Repository, ResourceSync
from repos.validation import parse_oci_check


class RepositoryViewSet(ResourceViewSet):
    """Repositories. Secrets are encrypted before they are stored; ``*****`` keeps one."""

    model = Repository
    serializer = RepositorySerializer()
    selectable_fields = REPOSITORY_FIELDS

    def initial_status(self) -> dict:
        return {"conditions": []}

    def _sealed(self, spec: dict, stored: dict | None) -> dict:
        refusal = guards.destination_change(stored, spec)
        if refusal:
            raise bad_request(refusal)
        sealed = crypto.seal(spec, stored)
        if crypto.has_mask(sealed):
            raise bad_request(f'spec: Invalid value: "{crypto.MASK}": there is no stored '
                              "secret to keep; send the secret itself")
        return sealed

    def new_object(self, incoming: Incoming):
        incoming.spec = self._sealed(incoming.spec, None)
        return super().new_object(incoming)

    def apply_changes(self, obj, incoming: Incoming) -> list[str]:
        if incoming.spec is not None:
            incoming.spec = self._sealed(incoming.spec, obj.spec)
        return super().apply_changes(obj, incoming)


class ResourceSyncViewSet(ResourceViewSet):
    """ResourceSyncs. Deleting one leaves its fleets in place, without an owner."""

    model = ResourceSync
    serializer = ResourceSyncSerializer()
    selectable_fields = RESOURCE_SYNC_FIELDS

    def initial_status(self) -> dict:
        return {"conditions": []}

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        old = (instance.spec or {}).get("type") or "fleet"
        new = (incoming.spec or {}).get("type") or "fleet"
        if old != new:
            raise bad_request("spec.type is immutable")
        super().check_update(instance, incoming, patch=patch)

    def after_delete(self, obj) -> None:
        super().after_delete(obj)
        sync.release(obj, self.actor)


class RepositoryOciCheckView(APIView):
    """``POST /repositories/{name}/check-oci-tag`` and ``check-oci-image``: ask the registry of
    an OCI Repository, with its credentials and TLS settings, whether an image (or one of its
    tags) is there. The answer is a ``CheckRepositoryOciResult`` with status 200 whatever the
    registry said; 400 for a bad request or a Repository that is not an OCI registry."""

    def post(self, request, name: str, check: str):
        try:
            image, tag = parse_oci_check(request.data, with_tag=check == "check-oci-tag")
        except ValueError as exc:
            raise bad_request(str(exc))
        repo = Repository.objects.restrict(resolve_org(request)).filter(name=name).first()
        if repo is None:
            raise not_found("Repository", name)
        if (repo.spec or {}).get("type") != RepoType.OCI:
            raise bad_request(f'Repository "{name}" is of type '
                              f'"{(repo.spec or {}).get("type")}", not "oci"')
        spec = crypto.unseal(repo.spec)
        if check == "check-oci-tag":
            return Response(access.check_oci_tag(spec, image, tag))
        return Response(access.check_oci_image(spec, image))
