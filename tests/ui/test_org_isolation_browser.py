"""Two organizations with the same device and fleet names, in real Chromium: a user of team-a
logs in through an AuthProvider (node-oidc-provider on loopback, the organization and role
from its claims), sees only team-a's ``dev1`` and ``f1``, and changes only them (a label, a
fleet template) while team-b's objects of the same names stay as they were."""

from __future__ import annotations

import pytest
import requests

from tests.oidc_issuer import browser_login, running_issuer
from tests.ui.harness import Server, free_port, wait

ACCOUNTS = {"alice": {"organizations": ["team-a"], "groups": ["team-a:flightctl-operator"]},
            "carol": {"organizations": ["team-b"], "groups": ["team-b:flightctl-operator"]}}


def _provider(issuer: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "AuthProvider",
            "metadata": {"name": "corp"},
            "spec": {"providerType": "oidc", "displayName": "Corp SSO", "issuer": issuer,
                     "clientId": "fctl-console", "clientSecret": "console-secret-1",
                     "scopes": ["openid", "profile"],
                     "organizationAssignment": {"type": "dynamic",
                                                "claimPath": ["organizations"]},
                     "roleAssignment": {"type": "dynamic", "claimPath": ["groups"]}}}


def _objects(site: str) -> tuple[dict, dict]:
    device = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
              "metadata": {"name": "dev1", "labels": {"site": site}}, "spec": {}}
    fleet = {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet", "metadata": {"name": "f1"},
             "spec": {"selector": {"matchLabels": {"site": site}},
                      "template": {"spec": {"os": {"image": f"quay.io/{site}/os:1"}}}}}
    return device, fleet


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("orgs-ui")
    port = free_port()
    clients = [{"client_id": "fctl-console", "client_secret": "console-secret-1",
                "redirect_uris": [f"https://127.0.0.1:{port}/admin/sso/callback"]}]
    with running_issuer(work, clients=clients, accounts=ACCOUNTS) as issuer:
        server = Server(work, port=port)
        try:
            assert server.api.post(server.url("/api/v1/authproviders"), json=_provider(issuer),
                                   timeout=30).status_code == 201
            # Both organizations come into being as their users first log in.
            for user in ACCOUNTS:
                session = requests.Session()
                session.trust_env, session.verify = False, server.ca
                assert browser_login(server.url(
                    "/admin/sso/login?provider=corp&next=/admin/"), user, session).ok
            orgs = {o["spec"]["externalId"]: o["metadata"]["name"]
                    for o in server.get("/api/v1/organizations")["items"]}
            server.orgs = {"a": orgs["team-a"], "b": orgs["team-b"]}
            for site, org in server.orgs.items():
                for body, plural in zip(_objects(site), ("devices", "fleets"), strict=True):
                    response = server.api.post(server.url(f"/api/v1/{plural}"), json=body,
                                               params={"org_id": org}, timeout=30)
                    assert response.status_code == 201, response.text
            yield server
        finally:
            server.stop()


def _in(server, org: str, path: str) -> dict:
    return server.get(path, org_id=server.orgs[org])


def test_a_user_of_one_organization_sees_and_changes_only_its_objects(browser, server):
    browser.driver.delete_all_cookies()
    browser.open("/admin/login/?next=/admin/")
    browser.click("#sso-login")
    browser.fill("input[name=login]", "alice")  # the provider's own login form
    browser.fill("input[name=password]", "anything")
    browser.click("button[type=submit]")
    wait("the consent page", lambda: not browser.css("input[name=login]"), 20, 0.2)
    browser.click("button[type=submit]")
    wait("the console", lambda: "Overview" in browser.driver.title, 30, 0.3)
    assert browser.css(".role-badge")[0].text == "operator"

    browser.open("/admin/devices/device/")
    rows = [row.text for row in browser.css("#content tbody tr")]
    assert len(rows) == 1 and "dev1" in rows[0] and "site=a" in rows[0], rows
    browser.open("/admin/fleets/fleet/f1/")
    page = browser.text()
    assert "site=a" in page or "quay.io/a/os:1" in page
    assert "quay.io/b" not in page and "site=b" not in page

    # A label on dev1: team-a's device gets it, team-b's dev1 does not.
    browser.open("/admin/devices/device/dev1/")
    labels = browser.one("#labels-form textarea[name=labels]")
    assert labels.get_attribute("value") == "site=a"
    browser.set_value("#labels-form textarea[name=labels]", "site=a\nrack=r9")
    browser.click("#labels-form button[type=submit]")
    wait("the label saved", lambda: _in(server, "a", "/api/v1/devices/dev1")["metadata"][
        "labels"] == {"site": "a", "rack": "r9"}, 20, 0.3)
    assert _in(server, "b", "/api/v1/devices/dev1")["metadata"]["labels"] == {"site": "b"}

    # A template edit of f1: team-a's fleet changes, team-b's f1 stays.
    browser.open("/admin/fleets/fleet/f1/edit/")
    document = browser.one("#document").get_attribute("value")
    assert "quay.io/a/os:1" in document and "quay.io/b" not in document
    browser.set_value("#document", document.replace("quay.io/a/os:1", "quay.io/a/os:2"))
    browser.click("#save")
    wait("the fleet page", lambda: browser.driver.current_url.endswith("/admin/fleets/fleet/f1/"))

    def image(org: str) -> str:
        return _in(server, org, "/api/v1/fleets/f1")["spec"]["template"]["spec"]["os"]["image"]

    assert (image("a"), image("b")) == ("quay.io/a/os:2", "quay.io/b/os:1")
