"""Request/response rules every API path shares: version negotiation, input refused before
any view (flightctl.api.parsers) and security headers."""

from __future__ import annotations

from django.http import JsonResponse

from flightctl.api.errors import status_body, status_response
from flightctl.api.parsers import request_refusal

SUPPORTED_VERSIONS = ("v1beta1",)
VERSION_HEADER = "Flightctl-API-Version"


class ApiVersionMiddleware:
    """``Flightctl-API-Version`` negotiation (api.md §0.3).

    No header means the preferred version; an unsupported one is refused with 406 before any
    view runs, listing what is supported.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        requested = request.headers.get(VERSION_HEADER, "").strip()
        if requested and requested not in SUPPORTED_VERSIONS:
            supported = ", ".join(SUPPORTED_VERSIONS)
            body = status_body(
                406,
                "Requested API version is not supported for this endpoint. "
                f"Supported versions: {supported}",
            )
            # The reference sets only code and message in this one body.
            response = JsonResponse({"code": body["code"], "message": body["message"]}, status=406)
            response["Flightctl-API-Versions-Supported"] = supported
        else:
            response = self.get_response(request)
        response[VERSION_HEADER] = SUPPORTED_VERSIONS[0]
        response["Vary"] = VERSION_HEADER
        return response


class BadInputMiddleware:
    """A NUL in the path or query, or a declared body over the limit: 400/413 before any
    view reads a byte (see :func:`flightctl.api.parsers.request_refusal`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            refusal = request_refusal(request.path, request.META.get("QUERY_STRING", ""),
                                      request.META.get("CONTENT_LENGTH"))
            if refusal is not None:
                return status_response(refusal.status_code, refusal.message)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """The hardening headers the reference sends on every response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        response.setdefault("X-Content-Type-Options", "nosniff")
        response.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            # The admin UI needs its own styles and scripts; the JSON API needs nothing.
            response["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
        return response
