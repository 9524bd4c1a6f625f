"""Single sign-on in real Chromium: the console's login page sends the browser to a real
OpenID Connect provider (node-oidc-provider on loopback) and back, with the authorization code
flow and PKCE; the user's role comes from the issuer's groups claim."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from tests.ui.harness import Server, free_port, sso_login, stop_process, wait

PROVIDER = Path(__file__).parent / "oidc"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("sso")
    port, issuer_port = free_port(), free_port()
    issuer = f"http://127.0.0.1:{issuer_port}"
    if not (PROVIDER / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed: run scripts/install-test-deps.sh")
    log = open(work / "oidc-provider.log", "wb")  # noqa: SIM115 - closed below
    node = subprocess.Popen(
        ["node", str(PROVIDER / "provider.mjs"), str(issuer_port), "flightctl",
         f"https://127.0.0.1:{port}/admin/sso/callback"], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    server = None
    try:
        wait("the OIDC provider", lambda: _answers(f"{issuer}/.well-known/openid-configuration"),
             30)
        server = Server(work, port=port, oidc_issuer=issuer, oidc_client_id="flightctl")
        yield server
    finally:
        if server is not None:
            server.stop()
        stop_process(node)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False



def test_an_operator_logs_in_through_the_oidc_issuer_and_gets_its_role(browser, server):
    sso_login(browser, "alice")
    assert browser.css(".role-badge")[0].text == "operator"
    assert "oidc:alice" in browser.text("#user-tools").lower()
    browser.open("/admin/fleets/fleet/")
    assert browser.css("#new-fleet"), "an operator may create fleets"


def test_the_issuers_viewer_gets_a_read_only_console(browser, server):
    sso_login(browser, "viewer-bob")
    assert browser.css(".role-badge")[0].text == "viewer"
    browser.open("/admin/fleets/fleet/")
    assert not browser.css("#new-fleet")
