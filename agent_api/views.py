"""The agent operations (api.md §8) and the TPM credential challenge over HTTPS.

Authorization is by the signer of the caller's certificate (``request.agent_peer``):
enrollment routes need the enrollment signer; device routes need the device-management (or
renewal) signer *and* the device named in the path must be the certificate's own. Every call
made with a device certificate refreshes that device's last-seen time.

The views are plain Django views, not DRF: the long-poll must be an async view, and the rest
gains nothing from DRF's per-request machinery on this hot path. Errors are the same
``Status`` objects as on the user API.
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid

from django.db import IntegrityError, transaction
from django.http import JsonResponse

from devices.api.serializers import DeviceSerializer
from devices.models import Device
from devices.services import (
    report_status,
    touch_last_seen,
)
from enrollment import services, signers
from enrollment.api.serializers import (
    CertificateSigningRequestSerializer,
    EnrollmentRequestSerializer,
)
from enrollment.models import CertificateSigningRequest, EnrollmentRequest
from flightctl import pki
from flightctl.api.conditions import get_condition
from flightctl.api.errors import (
    MSG_DUPLICATE,
    ApiError,
    bad_request,
    conflict,
    not_found,
    status_response,
)
from flightctl.api.events import AGENT_API_ACTOR, record_event
from flightctl.api.parsers import load_json
from flightctl.api.resources import apply_json_patch

MIN_FINGERPRINT = 16
ER_SERIALIZER = EnrollmentRequestSerializer()
CSR_SERIALIZER = CertificateSigningRequestSerializer()
DEVICE_SERIALIZER = DeviceSerializer()


def _unexpected_signer(expected: str, got: str) -> ApiError:
    return ApiError(401, f'unexpected client certificate signer: expected "{expected}", '
                         f'got "{got}"')


def require_enrollment(peer: signers.Peer) -> None:
    if peer.signer != pki.SIGNER_ENROLLMENT:
        raise _unexpected_signer(pki.SIGNER_ENROLLMENT, peer.signer)
    if not (peer.common_name == pki.ENROLLMENT_CN
            or peer.common_name.startswith(pki.ENROLLMENT_CN + "-")):
        raise ApiError(401, f'invalid enrollment certificate common name "{peer.common_name}"')


def require_device(peer: signers.Peer, name: str | None = None) -> None:
    if peer.signer not in signers.DEVICE_SIGNERS:
        raise _unexpected_signer(pki.SIGNER_DEVICE_ENROLLMENT, peer.signer)
    if len(peer.device_name) < MIN_FINGERPRINT:
        raise ApiError(401, f'invalid device certificate common name "{peer.common_name}"')
    if name is not None and name != peer.device_name:
        raise ApiError(401, f'client certificate of device "{peer.device_name}" is not '
                            f'authorized for device "{name}"')


def org_of(peer: signers.Peer) -> uuid.UUID:
    return uuid.UUID(peer.org_id)


def parse_json(raw: bytes):
    # The user API's reading (NUL, nesting): the same input gets the same answer on both.
    return load_json(raw)


def _json(body: dict, status: int = 200) -> JsonResponse:
    return JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})


def agent_view(methods: tuple[str, ...]):
    """Method check and ``ApiError`` → ``Status`` for the synchronous agent views."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in methods:
                return status_response(405, f'Method "{request.method}" not allowed.')
            try:
                return view(request, request.agent_peer, *args, **kwargs)
            except ApiError as exc:
                return status_response(exc.status_code, exc.message)

        return wrapper

    return decorate


# -- enrollment (enrollment certificate) -------------------------------------------------------


@agent_view(("POST",))
def enrollment_requests(request, peer):
    return _json(create_enrollment_request(peer, request.body), 201)


def create_enrollment_request(peer: signers.Peer, raw: bytes) -> dict:
    """``POST /api/v1/enrollmentrequests``: verify and store a device's request (also served
    ahead of Django, :mod:`agent_api.hotpath`); the stored request's representation."""
    require_enrollment(peer)
    incoming = ER_SERIALIZER.parse(parse_json(raw))  # status is never taken from agents
    org = org_of(peer)
    try:
        with transaction.atomic():
            # A request of the same name is found by the insert (unique, IntegrityError: 409);
            # only when the device exists is it looked for, so that it still answers first.
            if Device.objects.restrict(org).filter(name=incoming.name).exists():
                if EnrollmentRequest.objects.restrict(org).filter(name=incoming.name).exists():
                    raise conflict(MSG_DUPLICATE)
                raise bad_request(MSG_DUPLICATE)
            er = EnrollmentRequest(org_id=org, name=incoming.name, labels=incoming.labels or {},
                                   spec=incoming.spec)
            services.prepare_enrollment_request(er)
            er.save(force_insert=True)
            record_event(org, "EnrollmentRequest", er.name, "ResourceCreated",
                         "EnrollmentRequest was created successfully.", actor=AGENT_API_ACTOR)
    except IntegrityError:
        raise conflict(MSG_DUPLICATE)
    return ER_SERIALIZER.to_representation(er)


def _enrollment_request(org, name: str, *, lock: bool = False) -> EnrollmentRequest:
    queryset = EnrollmentRequest.objects.restrict(org)
    er = (queryset.select_for_update() if lock else queryset).filter(name=name).first()
    if er is None:
        raise not_found("EnrollmentRequest", name)
    return er


@agent_view(("GET",))
def enrollment_request(request, peer, name: str):
    return _json(read_enrollment_request(peer, name))


def read_enrollment_request(peer: signers.Peer, name: str) -> dict:
    """``GET /api/v1/enrollmentrequests/{name}``: what an enrolling device polls for its
    certificate (also served ahead of Django)."""
    require_enrollment(peer)
    return ER_SERIALIZER.to_representation(_enrollment_request(org_of(peer), name))


def start_tpm_challenge(peer: signers.Peer, name: str) -> tuple[bytes, bytes]:
    """A new credential challenge for the enrolling TPM of request ``name``: the
    TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (HTTPS here, gRPC in agent_api.grpc)."""
    require_enrollment(peer)
    with transaction.atomic():
        er = _enrollment_request(org_of(peer), name, lock=True)
        return services.create_tpm_challenge(er, AGENT_API_ACTOR)


def finish_tpm_challenge(peer: signers.Peer, name: str,
                         answer: bytes) -> tuple[bool, EnrollmentRequest]:
    """Check the secret the TPM recovered; whether it was right, and the request."""
    require_enrollment(peer)
    with transaction.atomic():
        er = _enrollment_request(org_of(peer), name, lock=True)
        return services.answer_tpm_challenge(er, answer, AGENT_API_ACTOR), er


@agent_view(("POST",))
def tpm_challenge(request, peer, name: str):
    """Start a credential challenge: the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (base64)
    that only the enrolling TPM can turn back into the secret."""
    blob, encrypted = start_tpm_challenge(peer, name)
    return _json({"credentialBlob": base64.b64encode(blob).decode(),
                  "encryptedSecret": base64.b64encode(encrypted).decode()})


@agent_view(("POST",))
def tpm_challenge_response(request, peer, name: str):
    """Answer the outstanding challenge with ``{"secret": base64}``: 200 + the request with
    ``TPMVerified=True`` if right, 403 (condition ``TPMChallengeFailed``) if wrong."""
    require_enrollment(peer)
    body = parse_json(request.body)
    try:
        answer = base64.b64decode((body or {}).get("secret") or "", validate=True)
    except (binascii.Error, AttributeError, TypeError):
        raise bad_request("secret: Invalid value: must be base64")
    ok, er = finish_tpm_challenge(peer, name, answer)
    if not ok:
        condition = get_condition(er.status, "TPMVerified")
        return status_response(403, condition["message"])
    return _json(ER_SERIALIZER.to_representation(er))


# -- devices (management certificate, own device only) -----------------------------------------


def _device(org, name: str) -> Device:
    device = Device.objects.restrict(org).filter(name=name).first()
    if device is None:
        raise not_found("Device", name)
    return device


@agent_view(("PUT", "PATCH"))
def device_status(request, peer, name: str):
    """PATCH (JSON Patch of the status); a PUT is answered by agent_api.hotpath."""
    require_device(peer, name)
    body = parse_json(request.body)
    if request.method == "PATCH":
        current = DEVICE_SERIALIZER.to_representation(_device(org_of(peer), name))
        body = apply_json_patch(current, body)
        for key in ("apiVersion", "kind", "metadata", "spec"):
            if current.get(key) != body.get(key):
                raise bad_request(f"{key} is immutable")
    return _json(store_status(peer, name, body))


def store_status(peer: signers.Peer, name: str, body) -> dict:
    """Store the status in a Device document its agent sent; the Device as stored.

    The device is read only under the status write's own lock (which also refreshes its
    last-seen time)."""
    require_device(peer, name)
    incoming = DEVICE_SERIALIZER.parse(body, path_name=name, for_status=True)
    device = report_status(org_of(peer), name, incoming.status or {})
    if device is None:
        raise not_found("Device", name)
    return DEVICE_SERIALIZER.to_representation(device)


# -- certificate rotation (management certificate) ---------------------------------------------


def _decommissioning(device: Device | None) -> bool:
    if device is None:
        return False
    lifecycle = ((device.status or {}).get("lifecycle") or {}).get("status")
    return bool((device.spec or {}).get("decommissioning")) or lifecycle in (
        "Decommissioning", "Decommissioned")


@agent_view(("POST",))
def certificate_signing_requests(request, peer):
    require_device(peer)
    org = org_of(peer)
    touch_last_seen(org, peer.device_name)
    incoming = CSR_SERIALIZER.parse(parse_json(request.body))
    device = Device.objects.restrict(org).filter(name=peer.device_name).first()
    if _decommissioning(device):
        raise ApiError(401, f'device "{peer.device_name}" is decommissioning: certificates '
                            "cannot be renewed")
    csr = CertificateSigningRequest(
        org_id=org, name=incoming.name, labels=incoming.labels or {}, spec=incoming.spec,
        owner=f"Device/{peer.device_name}",
    )
    services.prepare_csr(csr, peer=peer)
    if csr.spec["signerName"] not in (pki.SIGNER_DEVICE_RENEWAL, pki.SIGNER_DEVICE_SVC_CLIENT):
        raise bad_request(f'signer "{csr.spec["signerName"]}" cannot be requested by a device')
    services.auto_approve(csr, peer)
    try:
        with transaction.atomic():
            if CertificateSigningRequest.objects.restrict(org).filter(name=csr.name).exists():
                raise conflict(MSG_DUPLICATE)
            csr.save(force_insert=True)
            record_event(org, "CertificateSigningRequest", csr.name, "ResourceCreated",
                         "CertificateSigningRequest was created successfully.",
                         actor=f"device:{peer.device_name}")
    except IntegrityError:
        raise conflict(MSG_DUPLICATE)
    return _json(CSR_SERIALIZER.to_representation(csr), 201)


@agent_view(("GET",))
def certificate_signing_request(request, peer, name: str):
    require_device(peer)
    org = org_of(peer)
    touch_last_seen(org, peer.device_name)
    csr = CertificateSigningRequest.objects.restrict(org).filter(name=name).first()
    if csr is None:
        raise not_found("CertificateSigningRequest", name)
    if csr.owner != f"Device/{peer.device_name}":
        raise ApiError(401, f'CertificateSigningRequest "{name}" is not owned by device '
                            f'"{peer.device_name}"')
    return _json(CSR_SERIALIZER.to_representation(csr))

