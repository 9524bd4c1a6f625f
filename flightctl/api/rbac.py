"""Roles: who may do what through the user API (api.md §0.7, the reference's static RBAC).

Every route is a *resource* (``devices``, ``devices/status``, ``enrollmentrequests/approval``,
``repositories/check-oci-tag`` …: the route's fixed segments) and a *verb* from its method
(``get``/``list`` for GET on an item/collection, ``create``, ``update``, ``patch``,
``delete``). A local user's role:

``admin``
    superusers (``flightctl-server create-token`` makes them by default): everything;
``org-admin``, ``operator``, ``viewer``, ``installer``
    members of the Django group ``flightctl-<role>`` (``create-token --role <role>``).

A user with no role may authenticate but do nothing beyond the ``auth/*`` endpoints, which
every authenticated user may call (to find out who it is and what it may do).
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

from flightctl.api.errors import ApiError

ROLES = ("admin", "org-admin", "operator", "viewer", "installer")
ALL_VERBS = ("get", "list", "create", "update", "patch", "delete")
READ = ("get", "list")
OPERATOR_KINDS = ("devices", "fleets", "resourcesyncs", "repositories", "imagebuilds",
                  "imageexports", "imagepromotions")

# role -> [(resource pattern, verbs)]; "*" matches any resource, "<kind>/*" its subresources.
GRANTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "admin": [("*", ALL_VERBS)],
    "org-admin": [("*", ALL_VERBS)],
    "operator": [
        *[(kind, ALL_VERBS) for kind in OPERATOR_KINDS],
        *[(f"{kind}/*", ALL_VERBS) for kind in ("devices", "fleets")],
        ("repositories/check-oci-tag", ("create",)),
        ("repositories/check-oci-image", ("create",)),
        ("devices/resume", ("update",)),
        ("devices/applications/lifecycle", ("update",)),
        ("fleets/applications/lifecycle", ("update",)),
        ("*", READ),
    ],
    "viewer": [("*", READ)],
    "installer": [
        ("enrollmentrequests", READ),
        ("enrollmentrequests/approval", ("update",)),
        ("organizations", READ),
        ("certificatesigningrequests", ("get", "list", "create", "update")),
        ("certificatesigningrequests/approval", ("update",)),
        ("enrollmentconfig", READ),  # what `flightctl certificate request` writes out
    ],
}
# Denied to a viewer even though "*" would allow them (the reference's explicit denials).
DENIED = {"viewer": {"devices/console", "devices/applications/console",
                     "imageexports/download"}}
# Actions whose routes do not spell the reference's resource name.
ALIASES = {
    "devices/applications/actions/start": "devices/applications/lifecycle",
    "devices/applications/actions/stop": "devices/applications/lifecycle",
    "devices/applications/actions/restart": "devices/applications/lifecycle",
    "fleets/applications/actions/start": "fleets/applications/lifecycle",
    "fleets/applications/actions/stop": "fleets/applications/lifecycle",
    "deviceactions/resume": "devices/resume",
}
OPEN = {"auth/config", "auth/validate", "auth/userinfo", "auth/permissions", "version",
        "auth/token", "auth/local/token", "auth/local/.well-known/openid-configuration"}
# Not about one organization: any authenticated user may list the organizations it is in.
ORGLESS = {"organizations"}


def global_roles(user) -> list[str]:
    """The roles ``user`` holds in all its organizations (superuser, Django groups)."""
    if user is None or not user.is_active:
        return []
    if user.is_superuser:
        return ["admin"]
    names = {group.name for group in user.groups.all()}
    return [role for role in ROLES[1:] if f"flightctl-{role}" in names]


def role_of(user) -> str | None:
    """The strongest of the user's global roles (the console's view of a user)."""
    roles = global_roles(user)
    return roles[0] if roles else None


def _role_set(roles) -> set[str]:
    if roles is None:
        return set()
    return {roles} if isinstance(roles, str) else set(roles)


def _role_allows(role: str, resource: str, verb: str) -> bool:
    if resource in DENIED.get(role, ()):
        return False
    for pattern, verbs in GRANTS[role]:
        matches = (pattern == "*" or pattern == resource
                   or (pattern.endswith("/*") and resource.startswith(pattern[:-1])))
        if matches and verb in verbs:
            return True
    return False


def allowed(roles, resource: str, verb: str) -> bool:
    """Whether any of ``roles`` (a role, a set of them or None) allows ``verb``."""
    if resource in OPEN:
        return True
    return any(_role_allows(role, resource, verb) for role in _role_set(roles))


def permissions(roles) -> list[dict]:
    """``GET /auth/permissions``: the roles' grants as ``[{resource, operations}]``."""
    merged: dict[str, list[str]] = {}
    for role in sorted(_role_set(roles), key=ROLES.index):
        for pattern, verbs in GRANTS[role]:
            operations = merged.setdefault(pattern, [])
            operations += [verb for verb in verbs if verb not in operations]
    return [{"resource": resource, "operations": operations}
            for resource, operations in merged.items()]


def route_resource(request, view) -> tuple[str, str]:
    """The (resource, verb) of a request, from the route it matched."""
    match = request.resolver_match
    route = match.route if match is not None else request.path.lstrip("/")
    segments = [s for s in route.split("/") if s and not s.startswith("<")]
    if segments[:2] == ["api", "v1"]:
        segments = segments[2:]
    # A fixed action name passed as a keyword (rollout/<action>, check-oci-tag ...).
    action = (match.kwargs.get("action") or match.kwargs.get("check")) if match else None
    if action and action not in segments:
        segments.append(action)
    resource = "/".join(segments)
    resource = ALIASES.get(resource, resource)
    method = request.method.upper()
    if method in ("GET", "HEAD", "OPTIONS"):
        on_item = route.rstrip("/").endswith(">") and "<str:name>" in route
        verb = "get" if on_item or "/" in resource else "list"
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, "update")
    return resource, verb


class RolePermission(BasePermission):
    """DRF's gate: authenticated, and the user's role allows the route's resource and verb."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            return False  # DRF answers 401 with the authenticate header
        from flightctl.api.orgs import resolve_org, roles_in  # orgs builds on this module

        resource, verb = route_resource(request, view)
        if resource in OPEN or resource in ORGLESS:
            return True
        if allowed(roles_in(user, resolve_org(request)), resource, verb):
            return True
        raise ApiError(403, f'user "{user.get_username()}" may not {verb} {resource}')
