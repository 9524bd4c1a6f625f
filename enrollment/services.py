"""Enrollment rules shared by the user API and the agent API.

Everything that changes an EnrollmentRequest or CertificateSigningRequest beyond plain CRUD
lives here — TPM verification and the credential challenge, approval (which creates the
Device), CSR auto-approval and signing — so both APIs enforce the same state machines (see the
model docstrings). Callers hold the transaction; events are recorded inside it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from devices.choices import IntegrityStatus
from devices.models import Device
from devices.status import complete_status, initial_status
from enrollment import signers, tpm
from enrollment.choices import ConditionType, TPMReason
from enrollment.models import CertificateSigningRequest, EnrollmentRequest
from flightctl import pki
from flightctl.api.annotations import AWAITING_RECONNECT
from flightctl.api.conditions import get_condition, is_true, set_condition
from flightctl.api.errors import ApiError, bad_request, conflict, not_found
from flightctl.api.events import record_event
from flightctl.api.resources import run_write_hooks
from flightctl.api.serializers import timestamp

log = logging.getLogger(__name__)

CHALLENGE_LIFETIME = datetime.timedelta(minutes=5)
MSG_ALREADY_APPROVED = "Enrollment request is already approved"
MSG_ALREADY_DENIED = "Enrollment request is already denied"
#: what an approval or denial writes: the spec (the whole CSR and device status) stays as it
#: was stored, so it is not sent again
APPROVAL_FIELDS = ["status", "resource_version", "updated_at"]


# -- EnrollmentRequest -------------------------------------------------------------------------


def tpm_roots():
    return tpm.load_ca_files(settings.FLIGHTCTL.tpm_ca_files)


def prepare_enrollment_request(er: EnrollmentRequest) -> None:
    """Validate ``er.spec.csr`` and set the initial status (and annotations) of a new request.

    A plain PEM CSR must parse, verify and name the request. A TCG CSR is verified against the
    TPM manufacturer CAs; a failure does not refuse the request (the reference keeps it, with
    ``TPMVerified=False/TPMVerificationFailed``, and the device ends ``integrity: Failed``).
    """
    try:
        csr_pem, tcg = tpm.decode_csr_field(er.spec["csr"])
    except tpm.TPMVerificationError as exc:
        raise bad_request(f"spec.csr: Invalid value: {exc}")
    request = signers.load_csr(csr_pem)
    signers.check_device_enrollment_cn(request, er.name)
    check_name_is_key_fingerprint(er.name, request, tcg)
    status: dict = {"conditions": []}
    if tcg is not None:
        try:
            tpm.verify_tcg_csr(tcg, tpm_roots())
        except tpm.TPMVerificationError as exc:
            set_condition(status, ConditionType.TPM_VERIFIED, False,
                          TPMReason.VERIFICATION_FAILED, f"TPM verification failed: {exc}")
        else:
            set_condition(status, ConditionType.TPM_VERIFIED, False,
                          TPMReason.CHALLENGE_REQUIRED,
                          "TPM chain of trust verified; credential challenge required")
    er.status = status
    if isinstance(er.spec.get("deviceStatus"), dict):
        # Stored complete, so the request reads back as a valid DeviceStatus whatever subset
        # the agent sent (the reference's agents send all of it).
        er.spec["deviceStatus"] = complete_status(er.spec["deviceStatus"])
    known = (er.spec or {}).get("knownRenderedVersion")
    if known not in (None, "", "0"):
        er.annotations = {**(er.annotations or {}), AWAITING_RECONNECT: "true"}


def check_name_is_key_fingerprint(name: str, request, tcg: tpm.TCGCSR | None) -> None:
    """An EnrollmentRequest is named after its device's key: the fingerprint of the CSR's
    public key, and for a TPM request also of the attested LDevID. Otherwise anyone could
    squat another device's name (it would then get 409) and an approval would sign the
    squatter's key as that device."""
    try:
        fingerprints = pki.device_fingerprints(request.public_key())
    except (TypeError, ValueError):
        raise bad_request("spec.csr: Invalid value: the CSR's key must be an EC or RSA key")
    if name not in fingerprints:
        raise bad_request(f'metadata.name: Invalid value: "{name}": must be the fingerprint of '
                          f'the CSR\'s public key ("{fingerprints[0]}")')
    if tcg is None:
        return
    try:
        attested = pki.device_fingerprints(tpm.parse_ecc_public(tcg.signing_public).key)
    except (tpm.TPMVerificationError, ValueError, IndexError):
        raise bad_request("spec.csr: Invalid value: the TCG CSR's TPM key cannot be read")
    if name not in attested:
        raise bad_request(f'metadata.name: Invalid value: "{name}": must be the fingerprint of '
                          "the attested TPM key")


def _tcg_csr(er: EnrollmentRequest) -> tpm.TCGCSR | None:
    try:
        return tpm.decode_csr_field(er.spec["csr"])[1]
    except tpm.TPMVerificationError:
        return None


def create_tpm_challenge(er: EnrollmentRequest, actor: str) -> tuple[bytes, bytes]:
    """A new credential challenge for a pending TPM request (the caller holds the row lock).

    Returns the marshalled ``TPM2B_ID_OBJECT`` and ``TPM2B_ENCRYPTED_SECRET``; only the
    secret's digest is stored.
    """
    condition = get_condition(er.status, ConditionType.TPM_VERIFIED)
    tcg = _tcg_csr(er)
    if condition is None or tcg is None:
        raise bad_request("enrollment request does not carry a TPM CSR")
    if condition["status"] == "True":
        raise conflict("TPM credential challenge already completed")
    if condition["reason"] == TPMReason.VERIFICATION_FAILED:
        raise conflict(f"TPM verification failed, no challenge possible: {condition['message']}")
    if is_true(er.status, ConditionType.APPROVED) or is_true(er.status, ConditionType.DENIED):
        raise conflict("enrollment request is no longer pending")
    secret, blob, encrypted = tpm.new_challenge(tcg)
    er.tpm_challenge_digest = hashlib.sha256(secret).hexdigest()
    er.tpm_challenge_expires_at = timezone.now() + CHALLENGE_LIFETIME
    er.save(update_fields=["tpm_challenge_digest", "tpm_challenge_expires_at", "updated_at"])
    return blob, encrypted


def answer_tpm_challenge(er: EnrollmentRequest, answer: bytes, actor: str) -> bool:
    """Record the device's answer to the outstanding challenge; True if it was right.

    One answer per challenge: the digest is cleared either way, so a wrong answer cannot be
    followed by guesses against the same secret.
    """
    if not er.tpm_challenge_digest or er.tpm_challenge_expires_at is None:
        raise conflict("no TPM challenge is outstanding for this enrollment request")
    expired = er.tpm_challenge_expires_at < timezone.now()
    ok = not expired and hmac.compare_digest(hashlib.sha256(answer).hexdigest(),
                                             er.tpm_challenge_digest)
    if ok:
        set_condition(er.status, ConditionType.TPM_VERIFIED, True, TPMReason.CHALLENGE_SUCCEEDED,
                      "TPM activate credential challenge completed successfully")
    else:
        why = "the challenge expired" if expired else "the returned secret does not match"
        set_condition(er.status, ConditionType.TPM_VERIFIED, False, TPMReason.CHALLENGE_FAILED,
                      f"TPM challenge failed: {why}")
    er.tpm_challenge_digest, er.tpm_challenge_expires_at = "", None
    er.resource_version += 1
    er.save()
    record_event(er.org_id, "EnrollmentRequest", er.name, "ResourceUpdated",
                 "TPM credential challenge " + ("succeeded." if ok else "failed."), actor=actor,
                 type="Normal" if ok else "Warning")
    return ok


def device_integrity(er: EnrollmentRequest, now) -> dict:
    """``status.integrity`` of the device an approval creates (agent.md §2.3)."""
    condition = get_condition(er.status, ConditionType.TPM_VERIFIED)
    if condition is None:
        return {"status": IntegrityStatus.UNSUPPORTED,
                "info": "TPM not present or not enabled on this device"}
    if condition["status"] == "True":
        return {"status": IntegrityStatus.VERIFIED, "lastVerified": timestamp(now),
                "tpm": {"status": "Verified"}, "deviceIdentity": {"status": "Verified"}}
    return {"status": IntegrityStatus.FAILED, "info": condition.get("message", ""),
            "lastVerified": timestamp(now), "tpm": {"status": "Failed"},
            "deviceIdentity": {"status": "Failed"}}


def _new_device(er: EnrollmentRequest, labels: dict, now) -> Device:
    status = initial_status()
    status["lifecycle"] = {"status": "Enrolled"}
    system_info = ((er.spec or {}).get("deviceStatus") or {}).get("systemInfo")
    if system_info:
        status["systemInfo"] = system_info
    status["integrity"] = device_integrity(er, now)
    if (er.spec or {}).get("osMode"):
        status["capabilities"] = {"osMode": er.spec["osMode"]}
    annotations = {}
    if (er.annotations or {}).get(AWAITING_RECONNECT) == "true":
        annotations[AWAITING_RECONNECT] = "true"
        status["summary"] = {"status": "AwaitingReconnect",
                             "info": "Device is re-enrolling after a restore."}
    # Flagged for the fleets app's adoption pass from the start (no second write of the row).
    return Device(org_id=er.org_id, name=er.name, labels=labels, spec={}, status=status,
                  annotations=annotations, owner_pending=True)


def _run_device_hooks(device: Device) -> None:
    # Fleet selection and rendering hang off the resource framework's write hooks; a device
    # created by approval must set them in motion like one created through the API.
    run_write_hooks("Device", device, created=True, changed=["spec", "labels"])


def approve_enrollment_request(org_id, name: str, approval: dict, *, username: str,
                               actor: str) -> EnrollmentRequest:
    """Approve or deny (``approval["approved"]``) one request; see the model's state machine.

    Approval signs the device management certificate with ``flightctl.io/device-enrollment``
    and creates the Device, all in one transaction with its events.
    """
    with transaction.atomic():
        er = EnrollmentRequest.objects.restrict(org_id).select_for_update().filter(
            name=name).first()
        if er is None:
            raise not_found("EnrollmentRequest", name)
        if is_true(er.status, ConditionType.APPROVED):
            raise bad_request(MSG_ALREADY_APPROVED)
        if is_true(er.status, ConditionType.DENIED):
            raise bad_request(MSG_ALREADY_DENIED)
        now = timezone.now()
        requested = (er.spec or {}).get("labels") or {}
        given = approval.get("labels") or {}
        labels = dict(given) if approval.get("replaceLabels") else {**requested, **given}
        record = {"approved": bool(approval["approved"]), "labels": labels,
                  "replaceLabels": bool(approval.get("replaceLabels", False)),
                  "approvedBy": username, "approvedAt": timestamp(now)}
        er.status["approval"] = record
        if not approval["approved"]:
            set_condition(er.status, ConditionType.DENIED, True, "ManuallyDenied",
                          f"Denied by {username}")
            er.resource_version += 1
            er.save(update_fields=APPROVAL_FIELDS)
            record_event(org_id, "EnrollmentRequest", name, "ResourceUpdated",
                         f"EnrollmentRequest was denied by {username}.", actor=actor)
            return er
        if Device.objects.restrict(org_id).filter(name=name).exists():
            raise conflict(f'cannot approve enrollment request "{name}": device exists')
        csr_pem, _ = tpm.decode_csr_field(er.spec["csr"])
        cert = signers.issue(pki.SIGNER_DEVICE_ENROLLMENT, signers.load_csr(csr_pem), name=name,
                             org_id=org_id)
        er.status["certificate"] = signers.certificate_pem(cert)
        set_condition(er.status, ConditionType.APPROVED, True, "ManuallyApproved",
                      f"Approved by {username}")
        er.resource_version += 1
        er.save(update_fields=APPROVAL_FIELDS)
        device = _new_device(er, labels, now)
        device.save(force_insert=True)
        record_event(org_id, "EnrollmentRequest", name, "EnrollmentRequestApproved",
                     f"EnrollmentRequest was approved by {username}.", actor=actor)
        record_event(org_id, "Device", name, "ResourceCreated",
                     "Device was created successfully.", actor=actor)
        _run_device_hooks(device)
    return er


def check_enrollment_request_delete(er: EnrollmentRequest) -> None:
    if Device.objects.restrict(er.org_id).filter(name=er.name).exists():
        raise conflict(f'cannot delete ER "{er.name}": device exists')


# -- CertificateSigningRequest -----------------------------------------------------------------


def csr_request(csr: CertificateSigningRequest):
    """The x509 request in ``spec.request`` (base64 of a PEM CSR)."""
    try:
        pem = base64.b64decode(csr.spec.get("request") or "", validate=True)
    except ValueError:
        raise bad_request("spec.request: Invalid value: must be base64-encoded PEM")
    return signers.load_csr(pem)


def prepare_csr(csr: CertificateSigningRequest, *, peer: signers.Peer | None,
                username: str = "") -> None:
    """Normalize the signer, check the request against its rules, set the initial status."""
    signer = signers.normalize_signer_name(csr.spec.get("signerName"))
    csr.spec["signerName"] = signer
    usages = csr.spec.get("usages")
    if usages is not None and signer != pki.SIGNER_SERVER_SVC and "clientAuth" not in usages:
        raise bad_request('spec.usages: Invalid value: must include "clientAuth"')
    signers.check_request(signer, csr_request(csr), peer=peer)
    if username:
        csr.spec["username"] = username
    csr.status = {"conditions": []}


def _auto_approval(csr: CertificateSigningRequest, peer: signers.Peer | None) -> str | None:
    signer = csr.spec["signerName"]
    if signer == pki.SIGNER_ENROLLMENT:
        return f"Auto-approved by {signer}"
    if peer is not None and signer in (pki.SIGNER_DEVICE_RENEWAL, pki.SIGNER_DEVICE_SVC_CLIENT):
        device = Device.objects.restrict(csr.org_id).filter(name=peer.device_name).first()
        if device is not None and (device.status.get("integrity") or {}).get(
                "status") == IntegrityStatus.FAILED:
            return None  # TPM verification failed: a human must look at this device
        return f"Auto-approved by {signer}"
    return None


def approve_and_sign(csr: CertificateSigningRequest, *, message: str, peer=None) -> None:
    """Mark ``csr`` approved and sign it; a signing error ends in ``Failed`` (caller saves)."""
    set_condition(csr.status, ConditionType.APPROVED, True, "Approved", message)
    try:
        cert = signers.issue(csr.spec["signerName"], csr_request(csr), name=csr.name,
                             org_id=csr.org_id, peer=peer,
                             expiration_seconds=csr.spec.get("expirationSeconds"))
    except ApiError as exc:
        set_condition(csr.status, ConditionType.FAILED, True, "SigningFailed", exc.message)
        return
    csr.status["certificate"] = base64.b64encode(pki.cert_pem(cert)).decode()


def auto_approve(csr: CertificateSigningRequest, peer: signers.Peer | None) -> None:
    message = _auto_approval(csr, peer)
    if message:
        approve_and_sign(csr, message=message, peer=peer)


def update_csr_approval(csr: CertificateSigningRequest, conditions: list, *, username: str,
                        actor: str) -> None:
    """Apply an ``Approved`` or ``Denied`` condition from ``PUT …/approval`` (row locked)."""
    wanted = {c.get("type"): c for c in conditions or [] if isinstance(c, dict)}
    approve = (wanted.get(ConditionType.APPROVED) or {}).get("status") == "True"
    deny = (wanted.get(ConditionType.DENIED) or {}).get("status") == "True"
    if approve == deny:
        raise bad_request("status.conditions: exactly one of Approved or Denied must be True")
    if is_true(csr.status, ConditionType.DENIED):
        raise conflict("The request has already been denied")
    if is_true(csr.status, ConditionType.APPROVED):
        raise conflict("The request has already been approved")
    if deny:
        set_condition(csr.status, ConditionType.DENIED, True, "Denied", f"Denied by {username}")
    else:
        approve_and_sign(csr, message=f"Approved by {username}")
    csr.resource_version += 1
    csr.save()
    record_event(csr.org_id, "CertificateSigningRequest", csr.name, "ResourceUpdated",
                 f"CertificateSigningRequest was {'denied' if deny else 'approved'} by "
                 f"{username}.", actor=actor)
