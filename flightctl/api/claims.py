"""From a verified token's claims to a local user: its name, roles and organizations.

A provider's ``roleAssignment`` is ``static`` (``roles``) or ``dynamic`` (the claim at
``claimPath``, a list or a string). A role is one of the reference's external names
(``flightctl-admin``, ``flightctl-org-admin``, ``flightctl-operator``, ``flightctl-viewer``,
``flightctl-installer``); other values (a company's own groups) are ignored. A role may be
scoped to one organization as ``<organization><separator><role>`` (separator ``:`` by
default); a bare role or ``*:<role>`` applies in all the user's organizations.
``flightctl-admin`` counts only unscoped, and makes the user a super administrator.

``organizationAssignment`` is ``static`` (``organizationName``), ``dynamic`` (the names in the
claim at ``claimPath``, each wrapped in ``organizationNamePrefix``/``Suffix``) or ``perUser``
(``<prefix><username><suffix>``, prefix ``user-org-`` by default). An organization named
``default`` is the default organization; any other name is an Organization row with that
``external_id``, created on first sight.

The local mirror of an external user is named ``<provider>:<username>`` (a name no local user
can have), so two providers' "alice" and the local "admin" never meet. Its unscoped roles are
its Django groups, its organizations and scoped roles its OrganizationMembership rows (those
the provider granted; memberships granted by hand stay). Nothing is written while the claims
say what the database already holds.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from flightctl.api.rbac import ROLES
from flightctl.models import DEFAULT_ORG_ID, Organization, OrganizationMembership

ROLE_PREFIX = "flightctl-"
DEFAULT_ORG_NAME = "default"
MIRROR_TTL = 60.0  # seconds a process trusts that a user's rows match unchanged claims


class ClaimsError(ValueError):
    """The token's claims name no usable user; the message says why."""


def claim(claims: dict, path) -> object:
    """The value at a claim path (a list of keys, or a dotted string)."""
    value = claims
    for part in (path.split(".") if isinstance(path, str) else path or []):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


@dataclass
class Identity:
    """Who a token names, in our terms."""

    username: str
    superadmin: bool = False
    roles: set[str] = field(default_factory=set)  # in all the user's organizations
    org_roles: dict[str, set[str]] = field(default_factory=dict)  # organization name -> roles
    organizations: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(
            [self.username, self.superadmin, sorted(self.roles),
             {k: sorted(v) for k, v in sorted(self.org_roles.items())}, self.organizations],
        ).encode()).hexdigest()


def _internal_role(name: str) -> str | None:
    if name.startswith(ROLE_PREFIX) and name[len(ROLE_PREFIX):] in ROLES:
        return name[len(ROLE_PREFIX):]
    return None


def identity(claims: dict, spec: dict) -> Identity:
    """The identity a provider's spec reads from verified claims."""
    path = spec.get("usernameClaim") or ["preferred_username"]
    username = claim(claims, path)
    if not isinstance(username, str) or not username:
        raise ClaimsError(f"the token has no {'.'.join(path)} claim")
    who = Identity(username)
    who.organizations = _organizations(claims, spec.get("organizationAssignment") or {},
                                       username)
    roles = spec.get("roleAssignment") or {}
    if roles.get("type") == "static":
        names = _strings(roles.get("roles"))
    else:
        names = _strings(claim(claims, roles.get("claimPath") or ["groups"]))
    separator = roles.get("separator") or ":"
    for name in names:
        scope, sep, role_name = name.rpartition(separator)
        role = _internal_role(role_name if sep else name)
        if role is None:
            continue
        if not sep or scope == "*":
            if role == "admin":
                who.superadmin = True
            else:
                who.roles.add(role)
        elif role != "admin" and scope in who.organizations:
            who.org_roles.setdefault(scope, set()).add(role)
    return who


def identity_for(claims: dict, provider) -> Identity:
    """The identity ``provider`` (flightctl/api/providers.py) reads from verified claims. An
    untrusted provider (an organization administrator's) grants no super administrator and
    no organization but its own, whatever its IdP's claims or its stored spec say."""
    who = identity(claims, provider.spec)
    if not provider.trusted:
        own = organization_name(provider.org_id)
        who.superadmin = False
        who.organizations = [name for name in who.organizations if name == own]
        who.org_roles = {name: roles for name, roles in who.org_roles.items() if name == own}
    return who


_org_names: dict = {}


def organization_name(org_id) -> str | None:
    """The name a provider's ``organizationAssignment`` gives organization ``org_id``
    (``default``, else its ``externalId``; None if it has none). Cached: an organization's
    external id does not change."""
    if org_id == DEFAULT_ORG_ID:
        return DEFAULT_ORG_NAME
    if org_id not in _org_names:
        name = Organization.objects.filter(id=org_id).values_list("external_id", flat=True
                                                                 ).first()
        if not name:
            return None
        _org_names[org_id] = name
    return _org_names[org_id]


def _organizations(claims: dict, assignment: dict, username: str) -> list[str]:
    kind = assignment.get("type") or "static"
    prefix = assignment.get("organizationNamePrefix") or ""
    suffix = assignment.get("organizationNameSuffix") or ""
    if kind == "static":
        names = [assignment.get("organizationName") or DEFAULT_ORG_NAME]
    elif kind == "dynamic":
        names = [f"{prefix}{name}{suffix}"
                 for name in _strings(claim(claims, assignment.get("claimPath")))]
    elif kind == "perUser":
        names = [f"{assignment.get('organizationNamePrefix', 'user-org-')}{username}{suffix}"]
    else:
        names = []
    return list(dict.fromkeys(name for name in names if name))


def organization_ids(names: list[str]) -> dict[str, object]:
    """Organization name -> id, creating the organizations seen for the first time."""
    ids = {name: DEFAULT_ORG_ID for name in names if name == DEFAULT_ORG_NAME}
    wanted = [name for name in names if name not in ids]
    if wanted:
        found = dict(Organization.objects.filter(external_id__in=wanted)
                     .values_list("external_id", "id"))
        for name in wanted:
            if name not in found:
                org, _ = Organization.objects.get_or_create(
                    external_id=name, defaults={"display_name": name})
                found[name] = org.id
        ids.update(found)
    return ids


_mirrored: dict[str, tuple[float, str, int]] = {}  # username -> (when, fingerprint, pk)
_mirrored_lock = threading.Lock()


def user_for(who: Identity, provider_name: str):
    """The local user mirroring ``who``, its rows brought in line with the claims."""
    User = get_user_model()  # noqa: N806 - a class
    username = f"{provider_name}:{who.username}"
    fingerprint = who.fingerprint()
    with _mirrored_lock:
        seen = _mirrored.get(username)
    if seen and seen[1] == fingerprint and time.monotonic() - seen[0] < MIRROR_TTL:
        user = User.objects.filter(pk=seen[2]).first()
        if user is not None:
            return user
    with transaction.atomic():
        user, _ = User.objects.get_or_create(username=username)
        if user.is_superuser != who.superadmin:
            user.is_superuser = who.superadmin
            user.save(update_fields=["is_superuser"])
        _sync_groups(user, who.roles)
        _sync_memberships(user, who, provider_name)
    with _mirrored_lock:
        _mirrored[username] = (time.monotonic(), fingerprint, user.pk)
    return user


def _sync_groups(user, roles: set[str]) -> None:
    wanted = {f"{ROLE_PREFIX}{role}" for role in roles if role != "admin"}
    current = {g.name for g in user.groups.all() if g.name.startswith(ROLE_PREFIX)}
    if current == wanted:
        return
    user.groups.remove(*Group.objects.filter(name__in=current - wanted))
    for name in wanted - current:
        user.groups.add(Group.objects.get_or_create(name=name)[0])


def _sync_memberships(user, who: Identity, provider_name: str) -> None:
    ids = organization_ids(who.organizations)
    wanted = {ids[name]: sorted(who.org_roles.get(name, ())) for name in who.organizations}
    current = {m.org_id: m for m in OrganizationMembership.objects.filter(
        user=user, provider=provider_name)}
    for org_id, membership in current.items():
        if org_id not in wanted:
            membership.delete()
        elif membership.roles != wanted[org_id]:
            membership.roles = wanted[org_id]
            membership.save(update_fields=["roles", "updated_at"])
    for org_id, roles in wanted.items():
        if org_id not in current:
            OrganizationMembership.objects.get_or_create(
                user=user, org_id=org_id, defaults={"roles": roles, "provider": provider_name})
