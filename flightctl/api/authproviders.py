"""AuthProvider resources (``/api/v1/authproviders``, api.md §2.10): OpenID Connect issuers
and OAuth2 servers whose users may log in, created through the API beside the configured one.

The spec is the reference's ``OIDCProviderSpec`` or ``OAuth2ProviderSpec`` (discriminator
``providerType``); ``k8s``, ``aap`` and ``openshift`` providers cannot be created here. The
``clientSecret`` is sealed with the server key before it is stored and shown as ``*****``
(sent back on a PUT, ``*****`` keeps the stored one). Mapping users to organizations
dynamically or per user, and granting ``flightctl-admin`` statically, is for super
administrators only; two OIDC providers for one issuer and client id are a conflict. Writes
are seen by every process within ``auth_provider_cache_ttl`` (flightctl/api/providers.py).
"""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.db import transaction

from flightctl import sealing
from flightctl.api import claims, providers
from flightctl.api.errors import ApiError, bad_request, conflict
from flightctl.api.resources import ResourceViewSet
from flightctl.api.selectors import Field
from flightctl.api.serializers import Incoming, ResourceSerializer
from flightctl.api.validation import Errors
from flightctl.models import AuthProvider

TYPES = ("oidc", "oauth2")
CONFIG_ONLY = ("k8s", "aap", "openshift")
REQUIRED = {
    "oidc": ("issuer", "clientId", "clientSecret", "organizationAssignment", "roleAssignment"),
    "oauth2": ("authorizationUrl", "tokenUrl", "userinfoUrl", "clientId", "clientSecret",
               "organizationAssignment", "roleAssignment"),
}
URL_FIELDS = ("issuer", "authorizationUrl", "tokenUrl", "userinfoUrl")
STRING_FIELDS = ("displayName", "clientId", "clientSecret")
SUPER_ADMIN_ANNOTATION = providers.SUPER_ADMIN_ANNOTATION
_URL_RE = re.compile(r"^https?://[^/\s]+\S*$")

AUTHPROVIDER_FIELDS = {
    "spec.providerType": Field("spec__providerType"),
    "spec.issuer": Field("spec__issuer"),
    "spec.clientId": Field("spec__clientId"),
}


def _string_list(errors: Errors, path: str, value, *, required: bool) -> None:
    if value is None and not required:
        return
    if (not isinstance(value, list) or not all(isinstance(x, str) and x for x in value)
            or (required and not value)):
        errors.invalid(path, value, "must be a non-empty list of non-empty strings"
                       if required else "must be a list of non-empty strings")


def _validate_org_assignment(errors: Errors, value) -> None:
    path = "spec.organizationAssignment"
    if not isinstance(value, dict):
        errors.invalid(path, value, "must be an object")
        return
    kind = value.get("type")
    if kind == "static":
        if not isinstance(value.get("organizationName"), str) or not value["organizationName"]:
            errors.required(f"{path}.organizationName")
    elif kind == "dynamic":
        _string_list(errors, f"{path}.claimPath", value.get("claimPath"), required=True)
    elif kind != "perUser":
        errors.unsupported(f"{path}.type", kind, ["static", "dynamic", "perUser"])
    for key in ("organizationNamePrefix", "organizationNameSuffix"):
        if key in value and not isinstance(value[key], str):
            errors.invalid(f"{path}.{key}", value[key], "must be a string")


def _validate_role_assignment(errors: Errors, value) -> None:
    path = "spec.roleAssignment"
    if not isinstance(value, dict):
        errors.invalid(path, value, "must be an object")
        return
    kind = value.get("type")
    if kind == "static":
        _string_list(errors, f"{path}.roles", value.get("roles"), required=True)
    elif kind == "dynamic":
        _string_list(errors, f"{path}.claimPath", value.get("claimPath"), required=True)
        separator = value.get("separator")
        if separator is not None and (not isinstance(separator, str) or not separator):
            errors.invalid(f"{path}.separator", separator, "must be a non-empty string")
    else:
        errors.unsupported(f"{path}.type", kind, ["static", "dynamic"])


def _validate_introspection(errors: Errors, value) -> None:
    path = "spec.introspection"
    if not isinstance(value, dict):
        errors.invalid(path, value, "must be an object")
        return
    kind = value.get("type")
    # isinstance first: a non-string type (an object, a list) is unhashable as a dict key.
    url_key = isinstance(kind, str) and {"rfc7662": "url", "github": "url",
                                         "jwt": "jwksUrl"}.get(kind)
    if not url_key:
        errors.unsupported(f"{path}.type", kind, ["rfc7662", "github", "jwt"])
        return
    url = value.get(url_key)
    if (url is not None or kind != "github") and not (
            isinstance(url, str) and _URL_RE.match(url)):
        errors.invalid(f"{path}.{url_key}", url, "must be an http(s) URL")


def _plain_http(errors: Errors, spec: dict) -> None:
    found = providers.plain_http_destination(spec)
    if found:
        key, url, host = found
        errors.invalid(f"spec.{key}", url, "must be https: the client secret and users' "
                       f"tokens are not sent over plain HTTP to {host} (only to the hosts of "
                       "plain_http_credential_hosts)")


def validate_authprovider_spec(spec: dict, errors: Errors) -> None:
    kind = spec.get("providerType")
    if kind in CONFIG_ONLY:
        errors.forbidden("spec.providerType", f'"{kind}" providers can only come from the '
                         "server's configuration")
        return
    if kind not in TYPES:
        errors.unsupported("spec.providerType", kind, list(TYPES))
        return
    for key in REQUIRED[kind]:
        if spec.get(key) in (None, ""):
            errors.required(f"spec.{key}")
    for key in URL_FIELDS:
        value = spec.get(key)
        if value not in (None, "") and not (isinstance(value, str) and _URL_RE.match(value)):
            errors.invalid(f"spec.{key}", value, "must be an http(s) URL")
    for key in STRING_FIELDS:
        if key in spec and not isinstance(spec[key], str):
            errors.invalid(f"spec.{key}", spec[key], "must be a string")
    if "enabled" in spec and not isinstance(spec["enabled"], bool):
        errors.invalid("spec.enabled", spec["enabled"], "must be true or false")
    _string_list(errors, "spec.scopes", spec.get("scopes"), required=False)
    _string_list(errors, "spec.usernameClaim", spec.get("usernameClaim"),
                 required="usernameClaim" in spec)
    if "organizationAssignment" in spec:
        _validate_org_assignment(errors, spec["organizationAssignment"])
    if "roleAssignment" in spec:
        _validate_role_assignment(errors, spec["roleAssignment"])
    if "introspection" in spec:
        if kind != "oauth2":
            errors.forbidden("spec.introspection", "only oauth2 providers have one")
        else:
            _validate_introspection(errors, spec["introspection"])
    _plain_http(errors, spec)


class AuthProviderSerializer(ResourceSerializer):
    """Envelope of an AuthProvider: the client secret is shown as ``*****``."""

    kind = "AuthProvider"

    def spec_representation(self, obj) -> dict:
        spec = dict(obj.spec or {})
        if spec.get("clientSecret"):
            spec["clientSecret"] = sealing.MASK
        return spec

    def status_representation(self, obj):
        return None

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_authprovider_spec(spec, errors)


def needs_super_admin(spec: dict, own_org: str | None) -> str | None:
    """Why only a super administrator may write ``spec`` in the organization named
    ``own_org``; None if its administrators may."""
    assignment = spec.get("organizationAssignment") or {}
    org_type = assignment.get("type")
    if org_type in ("dynamic", "perUser"):
        return f"a {org_type} organization assignment"
    name = assignment.get("organizationName") or claims.DEFAULT_ORG_NAME
    if org_type == "static" and name != own_org:
        return "a provider whose users join another organization"
    roles = spec.get("roleAssignment") or {}
    if roles.get("type") == "static" and "flightctl-admin" in (roles.get("roles") or []):
        return "granting flightctl-admin"
    return None


class AuthProviderViewSet(ResourceViewSet):
    """AuthProviders: validated, secret sealed, seen by every process within seconds."""

    model = AuthProvider
    serializer = AuthProviderSerializer()
    selectable_fields = AUTHPROVIDER_FIELDS

    def _check(self, name: str, spec: dict) -> None:
        if name in (providers.STATIC_NAME, providers.LOCAL_NAME):
            raise bad_request(f'metadata.name: Invalid value: "{name}": the name of a '
                              "provider built into the server")
        reason = needs_super_admin(spec, claims.organization_name(self.org_id))
        if reason and not self.request.user.is_superuser:
            raise ApiError(403, f"only a super administrator may create {reason}")
        # One name, one provider: POST /auth/<name>/token and the mirrored users'
        # "<name>:<user>" must not be ambiguous between organizations.
        if AuthProvider.objects.filter(name=name).exclude(org_id=self.org_id).exists():
            raise conflict(f'an auth provider named "{name}" exists in another organization')
        if spec.get("providerType") == "oidc":
            twins = AuthProvider.objects.filter(
                spec__providerType="oidc", spec__issuer=spec.get("issuer"),
                spec__clientId=spec.get("clientId")).exclude(org_id=self.org_id, name=name)
            if twins.exists():
                raise conflict("an oidc auth provider with this issuer and client id exists")

    def _sealed(self, spec: dict, stored: dict | None) -> dict:
        spec = dict(spec)
        if (spec.get("clientSecret") == sealing.MASK and stored is not None
                and providers.destinations(spec) != providers.destinations(stored)):
            # The stored secret goes only where it was given for: a new destination must
            # come with the secret itself.
            raise bad_request(f'spec.clientSecret: Invalid value: "{sealing.MASK}": the '
                              "provider's endpoints changed; send the secret itself")
        if "clientSecret" in spec:
            spec["clientSecret"] = sealing.keep_or_seal(
                spec["clientSecret"], (stored or {}).get("clientSecret"), providers.PURPOSE)
            if spec["clientSecret"] == sealing.MASK:
                raise bad_request(f'spec.clientSecret: Invalid value: "{sealing.MASK}": there '
                                  "is no stored secret to keep; send the secret itself")
        return spec

    def check_create(self, incoming: Incoming) -> None:
        self._check(incoming.name, incoming.spec or {})

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        self._check(instance.name, incoming.spec or {})
        super().check_update(instance, incoming, patch=patch)

    def new_object(self, incoming: Incoming):
        incoming.spec = self._sealed(incoming.spec or {}, None)
        obj = super().new_object(incoming)
        if self.request.user.is_superuser:
            obj.annotations = {SUPER_ADMIN_ANNOTATION: "true"}
        return obj

    def apply_changes(self, obj, incoming: Incoming) -> list[str]:
        if incoming.spec is not None:
            incoming.spec = self._sealed(incoming.spec, obj.spec)
        changed = super().apply_changes(obj, incoming)
        # A super administrator's provider rewritten by somebody else is no longer trusted
        # as one (flightctl/api/providers.py, Provider.trusted).
        if (changed and not self.request.user.is_superuser
                and SUPER_ADMIN_ANNOTATION in (obj.annotations or {})):
            obj.annotations = {k: v for k, v in obj.annotations.items()
                               if k != SUPER_ADMIN_ANNOTATION}
            changed.append("metadata.annotations")
        return changed

    def after_write(self, obj, *, created: bool, changed: list[str]) -> None:
        super().after_write(obj, created=created, changed=changed)
        transaction.on_commit(providers.invalidate)

    def after_delete(self, obj) -> None:
        super().after_delete(obj)
        # Its mirrored users go with it (with their memberships and tokens): a provider of
        # that name created later, perhaps in another organization, starts afresh.
        get_user_model().objects.filter(username__startswith=f"{obj.name}:").delete()
        transaction.on_commit(providers.invalidate)
