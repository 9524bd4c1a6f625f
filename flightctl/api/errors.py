"""The ``Status`` object: how every API error (and a successful DELETE) is reported.

Clients of the reference match on codes and on message fragments (the agent looks for
``Device of name``), so every failure path — DRF exceptions, Django 404/500 handlers,
middleware refusals — goes through :func:`status_body`.
"""

from __future__ import annotations

import logging
import sys
from http import HTTPStatus

from django.http import Http404, JsonResponse
from rest_framework import exceptions

API_VERSION = "flightctl.io/v1beta1"
log = logging.getLogger(__name__)

MSG_CONFLICT = (
    "the object has been modified; please apply your changes to the latest version and try again"
)
MSG_DUPLICATE = "a resource with this name already exists"
MSG_OWNER_UPDATE = "updating the resource is not allowed because it has an owner"
MSG_OWNER_DELETE = "deleting the resource is not allowed because it has an owner"
MSG_NAME_MISMATCH = "resource name specified in metadata does not match name in path"


def reason_phrase(code: int) -> str:
    if code == 418:
        return "Auth not configured"
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def status_body(code: int, message: str = "", status: str | None = None) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "Status",
        "status": status or ("Success" if code < 400 else "Failure"),
        "code": code,
        "reason": reason_phrase(code),
        "message": message,
    }


def status_response(code: int, message: str = "", headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(status_body(code, message), status=code)
    for key, value in (headers or {}).items():
        response[key] = value
    return response


class ApiError(exceptions.APIException):
    """An error with an explicit HTTP code and the reference's message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.status_code = code
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, f'{kind} of name "{name}" not found')


def conflict(message: str = MSG_CONFLICT) -> ApiError:
    return ApiError(409, message)


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "\n".join(f"{key}: {_flatten(value)}" for key, value in detail.items())
    if isinstance(detail, list):
        return "\n".join(_flatten(item) for item in detail)
    return str(detail)


def exception_handler(exc, context):
    """DRF exception handler: everything becomes a ``Status``."""
    if isinstance(exc, ApiError):
        return status_response(exc.status_code, exc.message)
    if isinstance(exc, Http404):
        return status_response(404, str(exc) or "not found")
    if isinstance(exc, exceptions.NotAuthenticated):
        return status_response(401, "Authentication required", {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, exceptions.AuthenticationFailed):
        return status_response(401, str(exc.detail), {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, exceptions.ParseError):
        return status_response(400, f"API Error: {exc.detail}")
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return status_response(415, f"API Error: {exc.detail}")
    if isinstance(exc, exceptions.MethodNotAllowed):
        return status_response(405, str(exc.detail))
    if isinstance(exc, exceptions.APIException):
        return status_response(exc.status_code, _flatten(exc.detail))
    from flightctl.api import outage  # imports this module

    if outage.is_outage(exc):
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return outage.unavailable_response()
    log.exception("unhandled error in %s", context.get("view").__class__.__name__)
    return status_response(500, "internal error")


def handler404(request, exception=None):
    # A browser following a stale console link gets a page of the console, not a JSON body;
    # the APIs (and any client that does not ask for HTML) keep the Status format.
    if not request.path.startswith("/api/") and _wants_html(request):
        from django.shortcuts import render

        return render(request, "flightctl/not_found.html", {"path": request.path}, status=404)
    return status_response(404, f"the path {request.path} was not found")


def _wants_html(request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def handler500(request):
    # Django calls this while handling the exception (in the thread that raised it).
    from flightctl.api import outage

    if outage.is_outage(sys.exc_info()[1]):
        return outage.unavailable_response()
    return status_response(500, "internal error")
