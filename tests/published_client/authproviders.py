# ruff: noqa: I001 - "flightctl" here is the published client, not this project
"""Run with the published client's own Python (tests/published_client/.venv): create, list,
read and delete AuthProviders on the server at URL through the client's API classes and
generated models. Prints one JSON document of what it saw, for
tests/cli/test_published_client.py to check.

Usage: python authproviders.py URL CA_FILE TOKEN ISSUER
"""

import json
import sys

from flightctl.api.authprovider_api import AuthproviderApi
from flightctl.api_client import ApiClient
from flightctl.configuration import Configuration
from flightctl.exceptions import ApiException
from flightctl.models import (
    AuthDynamicRoleAssignment,
    AuthOrganizationAssignment,
    AuthProvider,
    AuthProviderSpec,
    AuthRoleAssignment,
    AuthStaticOrganizationAssignment,
    ObjectMeta,
    OIDCProviderSpec,
)

url, ca_file, token, issuer = sys.argv[1:5]
configuration = Configuration(host=f"{url}/api/v1")
configuration.ssl_ca_cert = ca_file
seen = {}
# The generated operations name no security scheme, so the bearer token goes in as a default
# header, as the client's users do.
with ApiClient(configuration, header_name="Authorization",
               header_value=f"Bearer {token}") as client:
    api = AuthproviderApi(client)
    spec = OIDCProviderSpec(
        providerType="oidc", displayName="Corp SSO", issuer=issuer, clientId="fctl-client",
        clientSecret="published-client-secret", scopes=["openid", "profile"],
        organizationAssignment=AuthOrganizationAssignment(AuthStaticOrganizationAssignment(
            type="static", organizationName="default")),
        roleAssignment=AuthRoleAssignment(AuthDynamicRoleAssignment(
            type="dynamic", claimPath=["groups"])))
    created = api.create_auth_provider(AuthProvider(
        apiVersion="flightctl.io/v1beta1", kind="AuthProvider",
        metadata=ObjectMeta(name="published"), spec=AuthProviderSpec(spec)))
    seen["created"] = created.to_dict()
    seen["listed"] = [item.metadata.name for item in api.list_auth_providers().items]
    seen["read"] = api.get_auth_provider("published").to_dict()
    seen["deleted"] = api.delete_auth_provider("published").to_dict()
    try:
        api.get_auth_provider("published")
    except ApiException as exc:
        seen["after_delete"] = exc.status
print(json.dumps(seen, default=str))
