"""Two organizations with the same device and fleet names, in real Chromium: a user of team-a
logs in through an AuthProvider (node-oidc-provider on loopback, the organization and role
from its claims), sees only team-a's ``dev1`` and ``f1``, and changes only them (a label, a
fleet template) while team-b's objects of the same names stay as they were."""

from __future__ import annotations

import pytest
import requests

from tests.oidc_issuer import browser_login, running_issuer
from tests.ui.harness import Server, free_port, sso_login, wait

ACCOUNTS = {"alice": {"organizations": ["team-a"], "groups": ["team-a:flightctl-operator"]},
            "carol": {"organizations": ["team-b"], "groups": ["team-b:flightctl-operator"]},
            # A member of both: a viewer in team-a, an operator in team-b.
            "bob": {"organizations": ["team-a", "team-b"],
                    "groups": ["team-a:flightctl-viewer", "team-b:flightctl-operator"]}}


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
            for user in ("alice", "carol"):
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



def _device_rows(browser) -> list[str]:
    browser.open("/admin/devices/device/")
    return [row.text for row in browser.css("#content tbody tr")]


def test_a_user_of_one_organization_sees_and_changes_only_its_objects(browser, server):
    sso_login(browser, "alice")
    assert browser.css(".role-badge")[0].text == "operator"
    assert not browser.css("#org-switch")  # one organization: nothing to switch

    rows = _device_rows(browser)
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


def test_a_member_of_both_switches_between_them_with_its_role_in_each(browser, server):
    from selenium.webdriver.support.ui import Select

    sso_login(browser, "bob")
    options = {o.get_attribute("value") for o in browser.css("#org-switch option")}
    assert options == set(server.orgs.values())
    for site, role in (("b", "operator"), ("a", "viewer")):
        Select(browser.one("#org-switch")).select_by_value(server.orgs[site])
        wait(f"the console in team-{site}", lambda site=site: browser.css(
            f'#org-switch option[value="{server.orgs[site]}"][selected]'), 20, 0.3)
        assert browser.css(".role-badge")[0].text == role
        rows = _device_rows(browser)
        assert len(rows) == 1 and f"site={site}" in rows[0], rows
    # As a viewer in team-a, no label form on team-a's dev1.
    browser.open("/admin/devices/device/dev1/")
    assert not browser.css("#labels-form")
    # A forged choice (an organization bob is not in) is refused; he stays where he was.
    browser.open("/admin/")
    browser.driver.execute_script(
        "const s = document.getElementById('org-switch');"
        "s.options[0].value = '00000000-0000-0000-0000-000000000000'; s.selectedIndex = 0;"
        "s.form.submit();")
    wait("the refusal", lambda: "Forbidden" in browser.driver.page_source
         or "403" in browser.driver.title, 20, 0.3)
    rows = _device_rows(browser)
    assert len(rows) == 1 and "site=a" in rows[0], rows
