"""The user API of enrollment: EnrollmentRequests (the waiting room and its approval),
CertificateSigningRequests, and the agent enrollment configuration."""

from __future__ import annotations

import base64

from django.conf import settings
from django.db import transaction
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.models import Device
from devices.status import complete_status
from enrollment import services
from enrollment.api.serializers import (
    CertificateSigningRequestSerializer,
    EnrollmentRequestSerializer,
)
from enrollment.filtersets import CERTIFICATE_SIGNING_REQUEST_FIELDS, ENROLLMENT_REQUEST_FIELDS
from enrollment.models import CertificateSigningRequest, EnrollmentRequest
from enrollment.signers import service_pki
from flightctl import pki
from flightctl.api.errors import MSG_DUPLICATE, ApiError, bad_request, not_found
from flightctl.api.resources import ResourceViewSet, resolve_org
from flightctl.api.serializers import Incoming
from flightctl.api.validation import Errors


def _username(request) -> str:
    user = request.user
    return user.get_username() if user is not None and user.is_authenticated else "unknown"


class EnrollmentRequestViewSet(ResourceViewSet):
    """EnrollmentRequests: created by agents (or users), approved or denied by users.

    The spec is fixed at creation (only labels change afterwards); a request whose device
    exists can be neither replaced nor deleted.
    """

    model = EnrollmentRequest
    serializer = EnrollmentRequestSerializer()
    selectable_fields = ENROLLMENT_REQUEST_FIELDS

    def check_create(self, incoming: Incoming) -> None:
        if Device.objects.restrict(self.org_id).filter(name=incoming.name).exists():
            raise bad_request(MSG_DUPLICATE)

    def new_object(self, incoming: Incoming):
        er = super().new_object(incoming)
        services.prepare_enrollment_request(er)
        return er

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        if Device.objects.restrict(self.org_id).filter(name=instance.name).exists():
            raise bad_request(f"{MSG_DUPLICATE}: device exists")
        spec = incoming.spec
        if spec is not None and isinstance(spec.get("deviceStatus"), dict):
            spec = {**spec, "deviceStatus": complete_status(spec["deviceStatus"])}
        if spec is not None and spec != instance.spec:
            raise bad_request("spec is immutable")
        incoming.spec = instance.spec

    def check_delete(self, instance) -> None:
        services.check_enrollment_request_delete(instance)

    def approval(self, request, name: str):
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("approved"), bool):
            raise bad_request("approved: Required value: must be a boolean")
        labels = body.get("labels")
        if labels is not None:
            errors = Errors()
            if not errors.labels("labels", labels):
                raise bad_request("\n".join(errors))
        er = services.approve_enrollment_request(
            self.org_id, name, body, username=_username(request), actor=self.actor
        )
        return Response(er.status["approval"])


class CertificateSigningRequestViewSet(ResourceViewSet):
    """CertificateSigningRequests: enrollment certificates for agents (auto-approved) and
    certificates that need a user's approval. The spec is fixed at creation."""

    model = CertificateSigningRequest
    serializer = CertificateSigningRequestSerializer()
    selectable_fields = CERTIFICATE_SIGNING_REQUEST_FIELDS

    def new_object(self, incoming: Incoming):
        csr = super().new_object(incoming)
        services.prepare_csr(csr, peer=None, username=_username(self.request))
        services.auto_approve(csr, None)
        return csr

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        if incoming.spec is not None and incoming.spec != instance.spec:
            raise bad_request("spec is immutable")
        super().check_update(instance, incoming, patch=patch)

    def approval(self, request, name: str):
        body = request.data
        status = body.get("status") if isinstance(body, dict) else None
        if not isinstance(status, dict):
            raise bad_request("status: Required value")
        with transaction.atomic():
            csr = self.get_object(name, lock=True)
            services.update_csr_approval(csr, status.get("conditions"),
                                         username=_username(request), actor=self.actor)
        return Response(self.represent(csr))


class EnrollmentConfigView(APIView):
    """``GET /api/v1/enrollmentconfig[?csr=NAME]``: the agent's ``enrollment-service`` block.

    As in the reference, ``client-key-data`` is always empty: the key belongs to whoever
    generated the CSR (e.g. ``flightctl certificate request``), which fills it in; the service
    never returns a private key.
    """

    def get(self, request):
        org_id = resolve_org(request)
        certificate = ""
        name = request.query_params.get("csr")
        if name:
            csr = CertificateSigningRequest.objects.restrict(org_id).filter(name=name).first()
            if csr is None:
                raise not_found("CertificateSigningRequest", name)
            if csr.spec.get("signerName") != pki.SIGNER_ENROLLMENT:
                raise bad_request(f'CertificateSigningRequest "{name}" is not for signer '
                                  f'"{pki.SIGNER_ENROLLMENT}"')
            certificate = (csr.status or {}).get("certificate") or ""
            if not certificate:
                raise ApiError(404, f'CertificateSigningRequest "{name}" has no certificate '
                                    "yet (not approved)")
        config = settings.FLIGHTCTL
        return Response({"enrollment-service": {
            "authentication": {"client-certificate-data": certificate, "client-key-data": ""},
            "service": {
                "certificate-authority-data": base64.b64encode(service_pki().bundle_pem())
                .decode(),
                "server": config.agent_api_url(),
            },
            "enrollment-ui-endpoint": config.user_api_url(),
        }})
