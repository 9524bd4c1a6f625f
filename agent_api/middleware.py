"""The agent API's only middleware: version negotiation, hardening headers and the caller's
identity from its verified client certificate (async-capable, see the settings module)."""

from __future__ import annotations

import uuid
from functools import lru_cache

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from cryptography import x509

from agent_api.server import PEERCERT_KEY
from enrollment.signers import Peer, public_key_der
from flightctl import pki
from flightctl.api import outage
from flightctl.api.errors import status_body, status_response
from flightctl.api.middleware import SUPPORTED_VERSIONS, VERSION_HEADER
from flightctl.api.parsers import request_refusal
from flightctl.models import DEFAULT_ORG_ID


@lru_cache(maxsize=16384)
def peer_from_certificate(der: bytes) -> Peer | None:
    """Who a (TLS-verified) client certificate identifies; cached by its bytes.

    The org comes from the org extension (default organization when absent); devices are named
    by their CN ``device:<fingerprint>``. None if the certificate carries no valid signer.
    """
    cert = x509.load_der_x509_certificate(der)
    signer = pki.certificate_extension(cert, pki.OID_SIGNER)
    if not signer:
        return None
    org = pki.certificate_extension(cert, pki.OID_ORG_ID) or str(DEFAULT_ORG_ID)
    try:
        org = str(uuid.UUID(org))
    except ValueError:
        return None
    cn = pki.common_name(cert)
    device = cn[len(pki.DEVICE_CN_PREFIX):] if cn.startswith(pki.DEVICE_CN_PREFIX) else ""
    return Peer(signer=signer, org_id=org, common_name=cn, device_name=device,
                public_key_der=public_key_der(cert.public_key()))


def authenticate(requested_version: str, state: dict) -> tuple[Peer | None, tuple | None]:
    """The caller of one request: ``(peer, None)``, or ``(None, (code, Status body, extra
    headers))`` when the request must be refused before any view runs."""
    requested = requested_version.strip()
    if requested and requested not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        return None, (406, status_body(
            406, f"Requested API version is not supported for this endpoint. Supported "
                 f"versions: {supported}"), {"Flightctl-API-Versions-Supported": supported})
    der = state.get(PEERCERT_KEY)
    if not der:
        return None, (400, status_body(400, "no TLS client certificate"), {})
    peer = peer_from_certificate(der)
    if peer is None:
        return None, (401, status_body(401, "client certificate carries no valid signer or "
                                            "organization"), {})
    return peer, None


def response_headers() -> dict[str, str]:
    """Headers of every agent API response: the negotiated version and hardening."""
    return {
        VERSION_HEADER: SUPPORTED_VERSIONS[0],
        "Vary": VERSION_HEADER,
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    }


class AgentMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        return self._finish(self._refuse(request) or self.get_response(request))

    async def _acall(self, request):
        refusal = self._refuse(request)
        return self._finish(refusal or await self.get_response(request))

    @staticmethod
    def process_exception(request, exception):
        """A database outage answers 503 with Retry-After (flightctl.api.outage); Django's
        handler500 cannot tell one here, where it runs in another thread than the view."""
        if outage.is_outage(exception):
            return outage.unavailable_response()
        return None

    @staticmethod
    def _refuse(request):
        bad = request_refusal(request.path, request.META.get("QUERY_STRING", ""),
                              request.META.get("CONTENT_LENGTH"))
        if bad is not None:
            return status_response(bad.status_code, bad.message)
        state = getattr(request, "scope", {}).get("state") or {}
        request.agent_peer, refusal = authenticate(request.headers.get(VERSION_HEADER, ""),
                                                   state)
        if refusal is None:
            return None
        code, body, headers = refusal
        return status_response(code, body["message"], headers)

    @staticmethod
    def _finish(response):
        for key, value in response_headers().items():
            response[key] = value
        return response
