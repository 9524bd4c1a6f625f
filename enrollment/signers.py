"""The service's certificate signers and the rules each applies (service.md §6.5).

* ``flightctl.io/enrollment`` (alias ``enrollment``): CN ``client-enrollment[-<CN>]``;
  requested by users, auto-approved; never by a holder of a device certificate.
* ``flightctl.io/device-enrollment``: CN ``device:<request name>``; only through the approval
  of an EnrollmentRequest (the CSR's CN must be the request's name).
* ``flightctl.io/device-management-renewal``: CN ``device:<fingerprint>``; a device, for
  itself, with its current key; auto-approved unless its TPM verification failed.
* ``flightctl.io/device-svc-client``: CN ``<anything>-<fingerprint>``; a device, auto-approved.
* ``flightctl.io/server-svc``: CN ``svc-<name>``, signed by the root; manual approval.

Every certificate lives at most 365 days; a request may shorten (never extend) that with
``expirationSeconds``. Device certificates carry the fingerprint extension; all carry the signer
and organization extensions that the agent API authorizes on. Every refusal is a 400 (401 for
a caller without the right certificate) whose message names the rule.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings

from flightctl import pki
from flightctl.api.errors import ApiError, bad_request

ALIASES = {"enrollment": pki.SIGNER_ENROLLMENT}
DEVICE_SIGNERS = (pki.SIGNER_DEVICE_ENROLLMENT, pki.SIGNER_DEVICE_RENEWAL)
CSR_SIGNERS = (
    pki.SIGNER_ENROLLMENT,
    pki.SIGNER_DEVICE_RENEWAL,
    pki.SIGNER_DEVICE_SVC_CLIENT,
    pki.SIGNER_SERVER_SVC,
)
MAX_LIFETIME = pki.CLIENT_LIFETIME


@dataclass(frozen=True)
class Peer:
    """Who presented a client certificate: what a signer needs to know about the requester."""

    signer: str
    org_id: str
    common_name: str
    device_name: str  # the CN without "device:" (empty for enrollment certificates)
    public_key_der: bytes


@cache
def _pki(data_dir, ca_cert_file, ca_key_file) -> pki.PKI:
    return pki.PKI(data_dir, ca_cert_file, ca_key_file)


def service_pki() -> pki.PKI:
    """The PKI of the running configuration (created on first use, then cached)."""
    config = settings.FLIGHTCTL
    return _pki(config.data_dir, config.ca_cert_file, config.ca_key_file)


def normalize_signer_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise bad_request("spec.signerName: Required value")
    if name == "ca":
        raise bad_request('signer "ca" is deprecated: use "flightctl.io/enrollment"')
    name = ALIASES.get(name, name)
    if name == pki.SIGNER_DEVICE_ENROLLMENT:
        raise bad_request(f'signer "{name}" is not allowed here: devices enroll with an '
                          "EnrollmentRequest")
    if name not in CSR_SIGNERS:
        raise bad_request(f'unknown signer "{name}"')
    return name


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    try:
        request = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise bad_request("invalid certificate signing request: not a PEM PKCS#10 request")
    if not request.is_signature_valid:
        raise bad_request("invalid certificate signing request: signature does not verify")
    try:
        cn = pki.common_name(request)
    except ValueError:
        raise bad_request("invalid certificate signing request: unreadable subject")
    _check_cn_length(cn, "CSR CN")
    return request


def _check_cn_length(cn: str, what: str) -> None:
    # Refused when the request is made: one accepted (and perhaps approved) must be signable.
    if len(cn) > pki.MAX_COMMON_NAME:
        raise bad_request(f"invalid certificate signing request: {what} is {len(cn)} "
                          f"characters, at most {pki.MAX_COMMON_NAME} are allowed")


def public_key_der(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def check_device_enrollment_cn(request: x509.CertificateSigningRequest, name: str) -> None:
    """The CSR of an EnrollmentRequest must name the request (optionally ``device:``-prefixed)."""
    cn = pki.common_name(request)
    if cn.removeprefix(pki.DEVICE_CN_PREFIX) != name:
        raise bad_request(f'attempt to supply a fake CN, possible identity theft: CSR CN "{cn}" '
                          f'does not match the enrollment request name "{name}"')


def _lifetime(expiration_seconds) -> datetime.timedelta:
    if expiration_seconds is None:
        return MAX_LIFETIME
    return min(MAX_LIFETIME, datetime.timedelta(seconds=int(expiration_seconds)))


def _enrollment_cn(cn: str) -> str:
    if cn == pki.ENROLLMENT_CN or cn.startswith(pki.ENROLLMENT_CN + "-"):
        return cn
    return f"{pki.ENROLLMENT_CN}-{cn}" if cn else pki.ENROLLMENT_CN


def check_request(signer: str, request: x509.CertificateSigningRequest, *, peer: Peer | None):
    """Refuse a CSR its signer would never sign (at creation, before anything is stored)."""
    cn = pki.common_name(request)
    if signer == pki.SIGNER_ENROLLMENT and peer is not None:
        raise bad_request(f'signer "{signer}" cannot be requested with a system-issued client '
                          "certificate")
    if signer in (pki.SIGNER_DEVICE_RENEWAL, pki.SIGNER_DEVICE_SVC_CLIENT):
        if peer is None or peer.signer not in DEVICE_SIGNERS:
            raise ApiError(401, f'signer "{signer}" requires a device management client '
                                "certificate")
    if signer == pki.SIGNER_DEVICE_RENEWAL:
        if cn.removeprefix(pki.DEVICE_CN_PREFIX) != peer.device_name:
            raise bad_request(f'csr CN mismatch: "{cn}" is not the device "{peer.device_name}"')
        if public_key_der(request.public_key()) != peer.public_key_der:
            raise bad_request("csr public key mismatch: a renewal must use the device's "
                              "current key")
    if signer == pki.SIGNER_DEVICE_SVC_CLIENT and not cn.endswith("-" + peer.device_name):
        raise bad_request(f'csr CN mismatch: "{cn}" must end with "-{peer.device_name}"')
    if signer == pki.SIGNER_SERVER_SVC and not (cn.startswith("svc-") and len(cn) > 4):
        raise bad_request(f'csr CN "{cn}" must be "svc-<name>" for signer "{signer}"')
    if signer == pki.SIGNER_ENROLLMENT:
        _check_cn_length(_enrollment_cn(cn), "the certificate's CN")


def issue(signer: str, request: x509.CertificateSigningRequest, *, name: str, org_id,
          peer: Peer | None = None, expiration_seconds=None) -> x509.Certificate:
    """Sign ``request`` with ``signer``'s rules; ``name`` is the EnrollmentRequest or CSR name."""
    ca = service_pki()
    lifetime = _lifetime(expiration_seconds)
    cn = pki.common_name(request)
    key = request.public_key()
    if signer == pki.SIGNER_DEVICE_ENROLLMENT:
        check_device_enrollment_cn(request, name)
        return pki.issue_client_certificate(
            ca.client_signer, key, pki.DEVICE_CN_PREFIX + name, signer, org_id=org_id,
            fingerprint=name, lifetime=lifetime)
    check_request(signer, request, peer=peer)
    if signer == pki.SIGNER_ENROLLMENT:
        return pki.issue_client_certificate(ca.client_signer, key, _enrollment_cn(cn), signer,
                                            org_id=org_id, lifetime=lifetime)
    if signer == pki.SIGNER_DEVICE_RENEWAL:
        return pki.issue_client_certificate(
            ca.client_signer, key, pki.DEVICE_CN_PREFIX + peer.device_name, signer,
            org_id=org_id, fingerprint=peer.device_name, lifetime=lifetime)
    if signer == pki.SIGNER_DEVICE_SVC_CLIENT:
        return pki.issue_client_certificate(ca.client_signer, key, cn, signer, org_id=org_id,
                                            fingerprint=peer.device_name, lifetime=lifetime)
    # server-svc: a server certificate from the root, for service-to-service TLS.
    cert = ca.root.issue_server_certificate(key, cn, [cn])
    return cert


def certificate_pem(cert: x509.Certificate) -> str:
    return pki.cert_pem(cert).decode()
