"""Who may do what in the console: the API's roles (flightctl/api/rbac.py), not Django's model
permissions, and the organization a request works in.

Every console page and every write asks here with the API's own (resource, verb) names, so a
viewer is refused exactly what the API refuses it, and templates hide the buttons it may not
use.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied

from flightctl.api import rbac
from flightctl.models import DEFAULT_ORG_ID, Organization

ORG_SESSION_KEY = "flightctl_org_id"


def role(request) -> str | None:
    if not hasattr(request, "_flightctl_role"):
        user = request.user
        request._flightctl_role = (rbac.role_of(user)
                                   if user is not None and user.is_authenticated else None)
    return request._flightctl_role


def can(request, resource: str, verb: str) -> bool:
    return rbac.allowed(role(request), resource, verb)


def require(request, resource: str, verb: str) -> None:
    """403 unless the user's role allows ``verb`` on ``resource`` (API names)."""
    if not can(request, resource, verb):
        raise PermissionDenied(
            f'user "{request.user.get_username()}" may not {verb} {resource}')


def org_id(request) -> uuid.UUID:
    """The organization the console shows: the one chosen in this session, else the default."""
    raw = request.session.get(ORG_SESSION_KEY)
    if raw:
        try:
            chosen = uuid.UUID(raw)
        except ValueError:
            chosen = None
        if chosen is not None and Organization.objects.filter(id=chosen).exists():
            return chosen
    return DEFAULT_ORG_ID
