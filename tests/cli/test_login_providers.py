"""Logging in through an AuthProvider created through the API, against a real OpenID Connect
provider (node-oidc-provider on loopback): ``flightctl login --web --no-browser`` driven by a
script through the provider's real authorization endpoint (login form, consent, the CLI's
loopback callback, PKCE), the user's organization and role from its claims, the token
refreshed, and refused once the provider is deleted."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests
import yaml

from tests.cli.conftest import FLIGHTCTL
from tests.net import free_port, wait_for
from tests.oidc_issuer import browser_login, running_issuer

CLIENT_ID, CLIENT_SECRET = "fctl-cli", "cli-secret-123"


@pytest.fixture(scope="module")
def callback_port():
    return free_port()


@pytest.fixture(scope="module")
def issuer(tmp_path_factory, callback_port):
    work = tmp_path_factory.mktemp("oidc")
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "application_type": "native",
                "redirect_uris": [f"http://127.0.0.1:{callback_port}/callback"]}]
    accounts = {
        # Operator in "edge" only; "staff" is a company group that means nothing to us.
        "alice": {"organizations": ["edge"], "groups": ["edge:flightctl-operator", "staff"]},
        # A viewer in "lab", and a member of "edge" without a role there.
        "bob": {"organizations": ["lab", "edge"], "groups": ["lab:flightctl-viewer"]},
        # Operators of two organizations that both hold a device and a fleet of one name.
        "dana": {"organizations": ["north"], "groups": ["north:flightctl-operator"]},
        "erin": {"organizations": ["south"], "groups": ["south:flightctl-operator"]},
    }
    with running_issuer(work, clients=clients, accounts=accounts) as url:
        yield url


def provider_document(issuer: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
            "metadata": {"name": "corp"},
            "spec": {"providerType": "oidc", "displayName": "Corp SSO", "issuer": issuer,
                     "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
                     "scopes": ["openid", "profile"],
                     "organizationAssignment": {"type": "dynamic",
                                                "claimPath": ["organizations"]},
                     "roleAssignment": {"type": "dynamic", "claimPath": ["groups"],
                                        "separator": ":"}}}


def web_login(cli, username: str, port: int, provider: str = "corp") -> str:
    """Run ``flightctl login --web --no-browser``, log in at the URL it prints; its output."""
    process = subprocess.Popen(
        [str(FLIGHTCTL), "login", cli.server.url, "--web", "--no-browser", "--provider", provider,
         "--callback-port", str(port), "--certificate-authority", str(cli.server.ca)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        assert process.stdout.readline().startswith("Open this URL in a browser")
        url = process.stdout.readline().strip()
        assert "code_challenge_method=S256" in url and f"client_id={CLIENT_ID}" in url
        landed = browser_login(url, username)
        assert landed.status_code == 200 and "Login complete" in landed.text, landed.text
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    return out


def org_id(server, name: str) -> str:
    orgs = server.api("GET", "organizations").json()["items"]
    return next(o["metadata"]["name"] for o in orgs if o["spec"]["externalId"] == name)


def device(name: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "labels": {"site": "edge"}}, "spec": {}}


def test_web_login_roles_orgs_refresh_and_a_deleted_provider(server, fresh_cli, issuer,
                                                              callback_port, tmp_path):
    cli = fresh_cli
    created = server.api("PUT", "authproviders/corp", json=provider_document(issuer))
    assert created.status_code in (200, 201), created.text
    providers = cli.ok("login", server.url, "--show-providers", "--certificate-authority",
                       server.ca)
    assert "corp" in providers and "Corp SSO" in providers

    out = web_login(cli, "alice", callback_port)
    assert "Login successful" in out
    saved = yaml.safe_load(cli.config_file.read_text())["authentication"]
    assert saved["token"].count(".") == 2 and saved["refresh-token"]
    assert saved["auth-provider"]["name"] == "corp"
    token = saved["token"]

    # Alice works in "edge" (created on first sight), as an operator: her device lands there.
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(device("sso-dev")))
    cli.ok("apply", "-f", tmp_path / "d.yaml")
    edge = org_id(server, "edge")
    assert server.api("GET", f"devices/sso-dev?org_id={edge}").status_code == 200
    assert server.api("GET", "devices/sso-dev").status_code == 404  # not in the default org
    assert "sso-dev" in cli.ok("get", "devices", "-o", "name")
    whoami = requests.get(f"{server.url}/api/v1/auth/userinfo", verify=str(server.ca),
                          headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    assert whoami["preferred_username"] == "alice"
    assert [o["spec"]["externalId"] for o in whoami["organizations"]] == ["edge"]
    # The default organization is not hers.
    default = "00000000-0000-0000-0000-000000000000"
    refused = cli("get", "devices", "--org", default)
    assert refused.code != 0 and "not a member of the organization" in refused.err

    # The token is refreshed when it is about to run out (here: the saved expiry is past).
    config = yaml.safe_load(cli.config_file.read_text())
    config["authentication"]["access-token-expiry"] = "2000-01-01T00:00:00Z"
    cli.config_file.write_text(yaml.safe_dump(config))
    time.sleep(1)  # a new ID token differs from the old one by its iat at least
    assert "sso-dev" in cli.ok("get", "devices", "-o", "name")
    refreshed = yaml.safe_load(cli.config_file.read_text())["authentication"]
    assert refreshed["token"] != token and refreshed["access-token-expiry"] > "2001"

    # Bob is a viewer in "lab" and has no role in "edge"; with two organizations he must say
    # which one.
    bob_cli = type(cli)(tmp_path / "bob", server)
    (tmp_path / "bob").mkdir()
    web_login(bob_cli, "bob", callback_port)
    ambiguous = bob_cli("get", "devices")
    assert ambiguous.code != 0 and "ambiguous organization" in ambiguous.err
    lab = org_id(server, "lab")
    assert bob_cli.ok("get", "devices", "--org", lab, "-o", "name") == ""
    assert bob_cli("get", "devices", "--org", edge).code != 0  # a member without a role
    denied = bob_cli("apply", "-f", tmp_path / "d.yaml", "--org", lab)
    assert denied.code != 0 and "may not" in denied.err

    # Deleting the provider: its tokens are refused from then on.
    current = yaml.safe_load(cli.config_file.read_text())["authentication"]["token"]
    assert server.api("DELETE", "authproviders/corp").status_code == 200
    wait_for(lambda: requests.get(
        f"{server.url}/api/v1/devices?org_id={edge}", verify=str(server.ca),
        headers={"Authorization": f"Bearer {current}"}, timeout=30).status_code == 401,
        15, what="the deleted provider's token refused")
    assert cli("get", "devices").code != 0


def oauth2_document(issuer: str) -> dict:
    """The same server as a plain OAuth2 provider: its endpoints named one by one, its access
    tokens opaque (node-oidc-provider's default format), checked at its userinfo endpoint."""
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
            "metadata": {"name": "corp-oauth2"},
            "spec": {"providerType": "oauth2", "displayName": "Corp OAuth2",
                     "authorizationUrl": f"{issuer}/auth", "tokenUrl": f"{issuer}/token",
                     "userinfoUrl": f"{issuer}/me", "clientId": CLIENT_ID,
                     "clientSecret": CLIENT_SECRET, "scopes": ["openid", "profile"],
                     "organizationAssignment": {"type": "dynamic",
                                                "claimPath": ["organizations"]},
                     "roleAssignment": {"type": "dynamic", "claimPath": ["groups"],
                                        "separator": ":"}}}


def test_oauth2_provider_with_opaque_tokens_checked_at_its_userinfo_endpoint(
        server, fresh_cli, issuer, callback_port, tmp_path):
    cli = fresh_cli
    created = server.api("PUT", "authproviders/corp-oauth2", json=oauth2_document(issuer))
    assert created.status_code in (200, 201), created.text
    assert "corp-oauth2" in cli.ok("login", server.url, "--show-providers",
                                   "--certificate-authority", server.ca)

    assert "Login successful" in web_login(cli, "alice", callback_port, "corp-oauth2")
    saved = yaml.safe_load(cli.config_file.read_text())["authentication"]
    first = saved["token"]
    assert "." not in first and saved["refresh-token"]  # opaque, not a JWT

    def status(token: str) -> int:
        return requests.get(f"{server.url}/api/v1/auth/userinfo", verify=str(server.ca),
                            headers={"Authorization": f"Bearer {token}"}, timeout=30
                            ).status_code

    # Roles and organization from the userinfo claims: an operator in "edge".
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(device("oauth2-dev")))
    cli.ok("apply", "-f", tmp_path / "d.yaml")
    edge = org_id(server, "edge")
    assert server.api("GET", f"devices/oauth2-dev?org_id={edge}").status_code == 200
    whoami = requests.get(f"{server.url}/api/v1/auth/userinfo", verify=str(server.ca),
                          headers={"Authorization": f"Bearer {first}"}, timeout=30).json()
    assert whoami["preferred_username"] == "alice"
    assert [o["spec"]["externalId"] for o in whoami["organizations"]] == ["edge"]

    # Refreshed through the token proxy at the provider's tokenUrl.
    config = yaml.safe_load(cli.config_file.read_text())
    config["authentication"]["access-token-expiry"] = "2000-01-01T00:00:00Z"
    cli.config_file.write_text(yaml.safe_dump(config))
    assert "oauth2-dev" in cli.ok("get", "devices", "-o", "name")
    second = yaml.safe_load(cli.config_file.read_text())["authentication"]["token"]
    assert second != first and "." not in second
    # Another login (another grant at the provider), then the refreshed token revoked at the
    # provider: that grant's tokens are refused once the short userinfo cache
    # (auth_provider_cache_ttl) has run out; the other login's token still works.
    other = type(cli)(tmp_path / "other", server)
    (tmp_path / "other").mkdir()
    web_login(other, "alice", callback_port, "corp-oauth2")
    third = yaml.safe_load(other.config_file.read_text())["authentication"]["token"]
    revoked = requests.post(f"{issuer}/token/revocation", timeout=30, data={
        "token": second, "token_type_hint": "access_token", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET})
    assert revoked.status_code == 200, revoked.text
    wait_for(lambda: status(second) == 401, 15, what="the revoked token refused")
    assert status(third) == 200

    # With an RFC 7662 introspection endpoint the token must be active there too: a wrong
    # endpoint refuses it, the provider's own accepts it again.
    document = oauth2_document(issuer)
    for url, expected in ((f"{issuer}/no-such-endpoint", 401),
                          (f"{issuer}/token/introspection", 200)):
        document["spec"]["introspection"] = {"type": "rfc7662", "url": url}
        assert server.api("PUT", "authproviders/corp-oauth2", json=document).status_code == 200
        wait_for(lambda expected=expected: status(third) == expected, 15,
                 what=f"introspection at {url} deciding")

    # The provider deleted: its tokens are refused.
    assert server.api("DELETE", "authproviders/corp-oauth2").status_code == 200
    wait_for(lambda: status(third) == 401, 15, what="the deleted provider's token refused")


def test_two_organizations_with_the_same_names_by_the_cli(server, fresh_cli, issuer,
                                                          callback_port, tmp_path):
    assert server.api("PUT", "authproviders/corp", json=provider_document(issuer)
                      ).status_code in (200, 201)
    dana = fresh_cli
    erin = type(dana)(tmp_path / "erin", server)
    (tmp_path / "erin").mkdir()
    web_login(dana, "dana", callback_port)
    web_login(erin, "erin", callback_port)  # "south" exists from here on
    orgs = {name: org_id(server, name) for name in ("north", "south")}
    for name, org in orgs.items():
        body = device("dev1")
        body["metadata"]["labels"] = {"site": name}
        fleet = {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet",
                 "metadata": {"name": "f1"},
                 "spec": {"selector": {"matchLabels": {"fleet": name}},  # not dev1
                          "template": {"spec": {"os": {"image": f"quay.io/{name}/os:1"}}}}}
        assert server.api("POST", f"devices?org_id={org}", json=body).status_code == 201
        assert server.api("POST", f"fleets?org_id={org}", json=fleet).status_code == 201

    def labels(org: str) -> dict:
        return server.api("GET", f"devices/dev1?org_id={orgs[org]}").json()["metadata"][
            "labels"]

    # Each sees its own dev1 and f1 only.
    assert dana.ok("get", "devices", "-o", "name").split() == ["device/dev1"]
    assert yaml.safe_load(dana.ok("get", "device/dev1", "-o", "yaml"))["metadata"][
        "labels"] == {"site": "north"}
    assert "quay.io/south" not in dana.ok("get", "fleet/f1", "-o", "yaml")
    assert yaml.safe_load(erin.ok("get", "device/dev1", "-o", "yaml"))["metadata"][
        "labels"] == {"site": "south"}
    # Dana's changes reach north's objects only.
    changed = device("dev1")
    changed["metadata"]["labels"] = {"site": "north", "rack": "r9"}
    (tmp_path / "dev1.yaml").write_text(yaml.safe_dump(changed))
    dana.ok("apply", "-f", tmp_path / "dev1.yaml")
    assert (labels("north"), labels("south")) == ({"site": "north", "rack": "r9"},
                                                  {"site": "south"})
    dana.ok("delete", "fleet/f1")
    assert server.api("GET", f"fleets/f1?org_id={orgs['north']}").status_code == 404
    assert server.api("GET", f"fleets/f1?org_id={orgs['south']}").status_code == 200
    # Naming the other organization: refused.
    for args in (("get", "devices", "--org", orgs["south"]),
                 ("delete", "device/dev1", "--org", orgs["south"])):
        refused = dana(*args)
        assert refused.code != 0 and "not a member of the organization" in refused.err
    assert labels("south") == {"site": "south"}
    assert server.api("DELETE", "authproviders/corp").status_code == 200


BROWSER_STUB = """#!{python}
# The user's browser, as Python's webbrowser module starts one (BROWSER=<this file>, the URL
# as its argument): it returns at once and goes on in the background, through the
# provider's login and consent pages to the command's loopback callback.
import os
import sys

if os.fork():
    sys.exit(0)
os.setsid()
log = open({log!r}, "a")
os.dup2(log.fileno(), 1)
os.dup2(log.fileno(), 2)
sys.path.insert(0, {root!r})
from tests.oidc_issuer import browser_login

print(sys.argv[1], flush=True)
print(browser_login(sys.argv[1], "alice").status_code, flush=True)
"""


def test_web_login_opens_the_browser(server, fresh_cli, issuer, callback_port, tmp_path):
    import sys
    from pathlib import Path

    assert server.api("PUT", "authproviders/corp", json=provider_document(issuer)
                      ).status_code in (200, 201)
    stub, log = tmp_path / "browser", tmp_path / "browser.log"
    stub.write_text(BROWSER_STUB.format(python=sys.executable, log=str(log),
                                        root=str(Path(__file__).resolve().parents[2])))
    stub.chmod(0o755)
    out = fresh_cli.ok("login", server.url, "--web", "--provider", "corp", "--callback-port",
                       callback_port, "--certificate-authority", server.ca,
                       env={"BROWSER": str(stub)})
    assert "Login successful" in out
    opened, answered = log.read_text().split()[:2]
    assert opened.split("?")[0].endswith("/auth") and "code_challenge=" in opened
    assert answered == "200"
    saved = yaml.safe_load(fresh_cli.config_file.read_text())["authentication"]
    assert saved["token"].count(".") == 2 and saved["auth-provider"]["name"] == "corp"
    assert server.api("DELETE", "authproviders/corp").status_code == 200
