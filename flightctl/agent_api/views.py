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

import asyncio
import base64
import binascii
import functools
import json
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpResponse, JsonResponse

from devices.api.serializers import DeviceSerializer
from devices.models import Device
from devices.services import (
    last_seen_buffer,
    rendered_device_body,
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
from flightctl.agent_api import db as agent_db
from flightctl.agent_api.listener import listener
from flightctl.api.errors import (
    MSG_DUPLICATE,
    ApiError,
    bad_request,
    conflict,
    not_found,
    status_response,
)
from flightctl.api.events import record_event
from flightctl.api.resources import apply_json_patch
from flightctl.config import parse_duration

ACTOR = "service:flightctl-agent-api"
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


def _org(peer: signers.Peer) -> uuid.UUID:
    return uuid.UUID(peer.org_id)


def _json_body(request):
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        raise bad_request("API Error: request body is not valid JSON")


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
    require_enrollment(peer)
    incoming = ER_SERIALIZER.parse(_json_body(request))  # status is never taken from agents
    org = _org(peer)
    try:
        with transaction.atomic():
            if EnrollmentRequest.objects.restrict(org).filter(name=incoming.name).exists():
                raise conflict(MSG_DUPLICATE)
            if Device.objects.restrict(org).filter(name=incoming.name).exists():
                raise bad_request(MSG_DUPLICATE)
            er = EnrollmentRequest(org_id=org, name=incoming.name, labels=incoming.labels or {},
                                   spec=incoming.spec)
            services.prepare_enrollment_request(er)
            er.save(force_insert=True)
            record_event(org, "EnrollmentRequest", er.name, "ResourceCreated",
                         "EnrollmentRequest was created successfully.", actor=ACTOR)
    except IntegrityError:
        raise conflict(MSG_DUPLICATE)
    return _json(ER_SERIALIZER.to_representation(er), 201)


def _enrollment_request(org, name: str, *, lock: bool = False) -> EnrollmentRequest:
    queryset = EnrollmentRequest.objects.restrict(org)
    er = (queryset.select_for_update() if lock else queryset).filter(name=name).first()
    if er is None:
        raise not_found("EnrollmentRequest", name)
    return er


@agent_view(("GET",))
def enrollment_request(request, peer, name: str):
    require_enrollment(peer)
    return _json(ER_SERIALIZER.to_representation(_enrollment_request(_org(peer), name)))


@agent_view(("POST",))
def tpm_challenge(request, peer, name: str):
    """Start a credential challenge: the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET (base64)
    that only the enrolling TPM can turn back into the secret."""
    require_enrollment(peer)
    with transaction.atomic():
        er = _enrollment_request(_org(peer), name, lock=True)
        blob, encrypted = services.create_tpm_challenge(er, ACTOR)
    return _json({"credentialBlob": base64.b64encode(blob).decode(),
                  "encryptedSecret": base64.b64encode(encrypted).decode()})


@agent_view(("POST",))
def tpm_challenge_response(request, peer, name: str):
    """Answer the outstanding challenge with ``{"secret": base64}``: 200 + the request with
    ``TPMVerified=True`` if right, 403 (condition ``TPMChallengeFailed``) if wrong."""
    require_enrollment(peer)
    body = _json_body(request)
    try:
        answer = base64.b64decode((body or {}).get("secret") or "", validate=True)
    except (binascii.Error, AttributeError, TypeError):
        raise bad_request("secret: Invalid value: must be base64")
    with transaction.atomic():
        er = _enrollment_request(_org(peer), name, lock=True)
        ok = services.answer_tpm_challenge(er, answer, ACTOR)
    if not ok:
        condition = services.find_condition(er.status, "TPMVerified")
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
    require_device(peer, name)
    org = _org(peer)
    body = _json_body(request)
    if request.method == "PATCH":
        current = DEVICE_SERIALIZER.to_representation(_device(org, name))
        body = apply_json_patch(current, body)
        for key in ("apiVersion", "kind", "metadata", "spec"):
            if current.get(key) != body.get(key):
                raise bad_request(f"{key} is immutable")
    incoming = DEVICE_SERIALIZER.parse(body, path_name=name, for_status=True)
    # A PUT reads the device only under the status write's own lock (also refreshes last-seen).
    device = report_status(org, name, incoming.status or {})
    if device is None:
        raise not_found("Device", name)
    return _json(DEVICE_SERIALIZER.to_representation(device))


def _wait_timeout() -> float:
    return parse_duration(settings.FLIGHTCTL.rendered_wait_timeout)


@sync_to_async
def _rendered_response(org, name: str):
    # Loaded and serialized off the event loop: a rollout wakes thousands of long-polls at
    # once, and the loop must keep accepting and answering while their bodies are built.
    device = Device.objects.restrict(org).filter(name=name).first()
    if device is None:
        return status_response(404, f'Device of name "{name}" not found')
    return _json(rendered_device_body(device))


async def rendered_device(request, name: str):
    """``GET /devices/{name}/rendered[?knownRenderedVersion=N]``: the long-poll.

    200 + rendered Device when the device's version differs from ``N`` (or without ``N``);
    otherwise wait for a render notification up to ``rendered_wait_timeout`` → 204.
    """
    if request.method != "GET":
        return status_response(405, f'Method "{request.method}" not allowed.')
    peer = request.agent_peer
    try:
        require_device(peer, name)
        raw = request.GET.get("knownRenderedVersion")
        try:
            known = int(raw) if raw not in (None, "") else None
        except ValueError:
            raise bad_request(f"invalid knownRenderedVersion {raw!r}: must be an integer")
    except ApiError as exc:
        return status_response(exc.status_code, exc.message)
    org = _org(peer)
    if last_seen_buffer.enabled:
        touch_last_seen(org, name)  # an in-memory append; the flusher writes it
    else:
        await sync_to_async(touch_last_seen)(org, name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _wait_timeout()
    while True:
        # Subscribe before reading, so a render committed after the read still wakes us.
        waiter = listener.subscribe(org, name)
        try:
            # The cheap check first (no thread, one indexed lookup); the whole row only when
            # there is something new to send.
            version = await agent_db.rendered_version(org, name)
            if version is None:
                return status_response(404, f'Device of name "{name}" not found')
            if version == 0:
                return status_response(409, "no rendered version for device")
            if known is None or version != known:
                return await _rendered_response(org, name)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return HttpResponse(status=204)
            done, _ = await asyncio.wait({waiter}, timeout=remaining)
            if not done:
                return HttpResponse(status=204)
        finally:
            listener.unsubscribe(org, name, waiter)


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
    org = _org(peer)
    touch_last_seen(org, peer.device_name)
    incoming = CSR_SERIALIZER.parse(_json_body(request))
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
    org = _org(peer)
    touch_last_seen(org, peer.device_name)
    csr = CertificateSigningRequest.objects.restrict(org).filter(name=name).first()
    if csr is None:
        raise not_found("CertificateSigningRequest", name)
    if csr.owner != f"Device/{peer.device_name}":
        raise ApiError(401, f'CertificateSigningRequest "{name}" is not owned by device '
                            f'"{peer.device_name}"')
    return _json(CSR_SERIALIZER.to_representation(csr))

