"""Who may do what in the console: the API's roles (flightctl/api/rbac.py), not Django's model
permissions, and the organization a request works in.

Every console page and every write asks here with the API's own (resource, verb) names, so a
viewer is refused exactly what the API refuses it, and templates hide the buttons it may not
use.
"""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied

from flightctl.api import orgs, rbac
from flightctl.models import DEFAULT_ORG_ID, Organization

ORG_SESSION_KEY = "flightctl_org_id"


def roles(request) -> set[str]:
    """The user's roles in the organization the console shows (flightctl/api/orgs.py)."""
    if not hasattr(request, "_flightctl_roles"):
        user = request.user
        request._flightctl_roles = (orgs.roles_in(user, org_id(request))
                                    if user is not None and user.is_authenticated else set())
    return request._flightctl_roles


def role(request) -> str | None:
    """The strongest of those roles (what the console shows as the user's role)."""
    held = roles(request)
    return next((name for name in rbac.ROLES if name in held), None)


def can(request, resource: str, verb: str) -> bool:
    return rbac.allowed(roles(request), resource, verb)


def require(request, resource: str, verb: str) -> None:
    """403 unless the user's role allows ``verb`` on ``resource`` (API names)."""
    if not can(request, resource, verb):
        raise PermissionDenied(
            f'user "{request.user.get_username()}" may not {verb} {resource}')


def org_id(request) -> uuid.UUID:
    """The organization the console shows: the one chosen in this session (the header's
    switch) if the user may work there, else the user's first organization where it holds a
    role (the default one for administrators and local users without memberships)."""
    if hasattr(request, "_flightctl_console_org"):
        return request._flightctl_console_org
    user = request.user
    members = orgs.member_orgs(user) if user is not None and user.is_authenticated else []
    chosen = None
    raw = request.session.get(ORG_SESSION_KEY)
    if raw:
        try:
            chosen = uuid.UUID(raw)
        except ValueError:
            chosen = None
    if chosen is not None and (chosen in members or (
            user.is_superuser and Organization.objects.filter(id=chosen).exists())):
        found = chosen
    elif user is not None and user.is_superuser and len(members) != 1:
        found = DEFAULT_ORG_ID
    else:
        # The first where the user holds a role (a membership may come without one); no
        # organization at all: the default one, where such a user holds no role.
        found = next((org for org in members if orgs.roles_in(user, org)),
                     members[0] if members else DEFAULT_ORG_ID)
    request._flightctl_console_org = found
    return found


def organizations(request) -> list[tuple[uuid.UUID, str]]:
    """The organizations the user may switch the console to, with their names (none when
    there is only one to work in)."""
    user = request.user
    if user is None or not user.is_authenticated:
        return []
    rows = (Organization.objects.order_by("id") if user.is_superuser else
            Organization.objects.filter(id__in=orgs.member_orgs(user)).order_by("id"))
    found = [(org.id, org.display_name or org.external_id or str(org.id))
             for org in rows.only("id", "display_name", "external_id")[:100]]
    return found if len(found) > 1 else []


def choose(request, raw: str) -> None:
    """Work in organization ``raw`` from now on in this session; PermissionDenied unless the
    user may (a member, or a super administrator naming an existing one)."""
    try:
        wanted = uuid.UUID(str(raw))
    except ValueError:
        raise PermissionDenied(f"{raw!r} is not an organization id") from None
    if wanted not in {org for org, _ in organizations(request)}:
        raise PermissionDenied("user is not a member of the organization")
    request.session[ORG_SESSION_KEY] = str(wanted)
    for cached in ("_flightctl_console_org", "_flightctl_roles"):
        if hasattr(request, cached):
            delattr(request, cached)
