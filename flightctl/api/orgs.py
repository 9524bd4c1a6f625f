"""The organization of a user API request, and the user's roles in it (api.md §0.2).

``org_id=<uuid>`` on a request names the organization: the user must be a member (a super
administrator may name any existing one), else 403. Without it, a user of exactly one
organization works in that one; of none, 403; of several, 400 (ambiguous). A super
administrator without ``org_id`` works in the default organization, and a
local user without any membership is a member of the default organization, as before
organizations were modelled.
"""

from __future__ import annotations

import uuid

from flightctl.api import rbac
from flightctl.api.errors import ApiError, bad_request
from flightctl.models import DEFAULT_ORG_ID, Organization, OrganizationMembership

EXTERNAL_MARK = ":"  # in the name of every provider's user (claims.py), never a local one's


def member_orgs(user) -> list[uuid.UUID]:
    """The organizations ``user`` belongs to, in a stable order."""
    found = list(OrganizationMembership.objects.filter(user=user).order_by("org_id")
                 .values_list("org_id", flat=True))
    if not found and EXTERNAL_MARK not in user.get_username():
        return [DEFAULT_ORG_ID]
    return found


def resolve_org(request, user=None) -> uuid.UUID:
    """The organization of a request (cached on it); ApiError 400/403 as the rules say."""
    cached = getattr(request, "_flightctl_org", None)
    if cached is not None:
        return cached
    user = user or getattr(request, "user", None)
    raw = request.query_params.get("org_id") if hasattr(request, "query_params") else (
        request.GET.get("org_id"))
    if raw:
        try:
            org_id = uuid.UUID(raw)
        except ValueError:
            raise bad_request(f"invalid org_id {raw!r}: must be a UUID")
        if user is None or not user.is_authenticated:
            allowed = False
        elif user.is_superuser:
            allowed = Organization.objects.filter(id=org_id).exists()
        else:
            allowed = org_id in member_orgs(user)
        if not allowed:
            raise ApiError(403, "user is not a member of the organization")
    else:
        if user is not None and user.is_superuser:
            orgs = [DEFAULT_ORG_ID]  # no query: the hot path of every administrator's call
        else:
            orgs = member_orgs(user) if user is not None and user.is_authenticated else []
        if not orgs:
            raise ApiError(403, "user is not a member of any organization")
        if len(orgs) > 1:
            raise bad_request("ambiguous organization: the user is a member of several; "
                              "name one with org_id")
        org_id = orgs[0]
    try:
        request._flightctl_org = org_id
    except AttributeError:
        pass
    return org_id


def roles_in(user, org_id) -> set[str]:
    """The user's roles in one organization: its global roles and the membership's."""
    roles = set(rbac.global_roles(user))
    if user is not None and user.is_active and "admin" not in roles:
        membership = OrganizationMembership.objects.filter(user=user, org_id=org_id).first()
        if membership is not None:
            roles.update(r for r in membership.roles if r in rbac.ROLES)
    return roles


def visible_orgs(user):
    """The organizations ``GET /organizations`` lists for ``user``."""
    if user.is_superuser:
        return Organization.objects.order_by("id")
    return Organization.objects.filter(id__in=member_orgs(user)).order_by("id")


def has_any_role(user) -> bool:
    """Whether ``user`` holds a role anywhere (its global roles, or one of a membership)."""
    if rbac.global_roles(user):
        return True
    return any(role in rbac.ROLES for roles in OrganizationMembership.objects.filter(
        user=user).values_list("roles", flat=True) for role in roles)
