"""The console logs in through AuthProviders created through the API (not the configured
issuer), against the real node-oidc-provider as an OIDC provider and as a plain OAuth2 one
(opaque access token, claims from its userinfo endpoint), and then works in the organization
the user's claims name: a device of the default organization is not shown, one of the
user's is."""

from __future__ import annotations

import requests

from tests.oidc_issuer import browser_login, running_issuer
from tests.ui.harness import Server, free_port


def test_console_sso_through_an_authprovider_in_the_users_organization(tmp_path):
    port = free_port()
    clients = [{"client_id": "fctl-console", "client_secret": "console-secret-1",
                "redirect_uris": [f"https://127.0.0.1:{port}/admin/sso/callback"]}]
    accounts = {"alice": {"organizations": ["team-a"],
                          "groups": ["team-a:flightctl-operator"]},
                "bob": {"organizations": ["team-a"], "groups": ["team-a:flightctl-viewer"]}}
    with running_issuer(tmp_path, clients=clients, accounts=accounts) as issuer:
        server = Server(tmp_path, port=port)
        try:
            provider = {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
                        "metadata": {"name": "corp"},
                        "spec": {"providerType": "oidc", "displayName": "Corp SSO",
                                 "issuer": issuer, "clientId": "fctl-console",
                                 "clientSecret": "console-secret-1",
                                 "scopes": ["openid", "profile"],
                                 "organizationAssignment": {"type": "dynamic",
                                                            "claimPath": ["organizations"]},
                                 "roleAssignment": {"type": "dynamic",
                                                    "claimPath": ["groups"]}}}
            assert server.api.post(server.url("/api/v1/authproviders"), json=provider,
                                   timeout=30).status_code == 201
            browser = requests.Session()
            browser.trust_env = False
            browser.verify = server.ca
            assert "Log in with Corp SSO" in browser.get(server.url("/admin/login/"),
                                                         timeout=30).text
            landed = browser_login(server.url("/admin/sso/login?provider=corp&next=/admin/"),
                                   "alice", browser)
            assert landed.status_code == 200 and landed.url.endswith("/admin/"), landed.url
            assert "corp:alice" in landed.text and "operator" in landed.text

            team_a = next(o["metadata"]["name"] for o in server.get("/api/v1/organizations")[
                "items"] if o["spec"]["externalId"] == "team-a")
            for org, name in ((team_a, "a-only"), ("", "default-only")):
                body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
                        "metadata": {"name": name}, "spec": {}}
                assert server.api.post(server.url("/api/v1/devices"), json=body, timeout=30,
                                       params={"org_id": org} if org else {}).ok
            page = browser.get(server.url("/admin/devices/device/"), timeout=30).text
            assert "a-only" in page and "default-only" not in page

            # The same server as a plain OAuth2 provider: its endpoints named, its opaque
            # access token checked at its userinfo endpoint, the claims from there.
            oauth2 = {**provider, "metadata": {"name": "corp-oauth2"}, "spec": {
                **{k: v for k, v in provider["spec"].items() if k != "issuer"},
                "providerType": "oauth2", "displayName": "Corp OAuth2",
                "authorizationUrl": f"{issuer}/auth", "tokenUrl": f"{issuer}/token",
                "userinfoUrl": f"{issuer}/me"}}
            assert server.api.post(server.url("/api/v1/authproviders"), json=oauth2,
                                   timeout=30).status_code == 201
            other = requests.Session()
            other.trust_env, other.verify = False, server.ca
            assert "Log in with Corp OAuth2" in other.get(server.url("/admin/login/"),
                                                          timeout=30).text
            landed = browser_login(server.url(
                "/admin/sso/login?provider=corp-oauth2&next=/admin/devices/device/"), "bob",
                other)
            assert landed.status_code == 200, landed.text[:500]
            assert landed.url.endswith("/admin/devices/device/"), landed.url
            assert "corp-oauth2:bob" in landed.text and "viewer" in landed.text
            assert "a-only" in landed.text and "default-only" not in landed.text
        finally:
            server.stop()
