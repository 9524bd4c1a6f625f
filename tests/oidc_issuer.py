"""The real OpenID Connect provider of the login tests: node-oidc-provider (tests/ui/oidc/,
installed by scripts/install-test-deps.sh) on loopback, with the clients and accounts a test
sets up, and a script that walks its real authorization endpoint as a browser would."""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.net import free_port, wait_for

PROVIDER = Path(__file__).parent / "ui" / "oidc"


@contextmanager
def running_issuer(work: Path, *, clients: list, accounts: dict):
    """``node provider.mjs`` until the end of the block; yields its issuer URL."""
    if not (PROVIDER / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed: run scripts/install-test-deps.sh")
    port = free_port()
    setup = work / "oidc-setup.json"
    setup.write_text(json.dumps({"clients": clients, "accounts": accounts}))
    log = open(work / "oidc-provider.log", "wb")  # noqa: SIM115 - closed below
    node = subprocess.Popen(
        ["node", str(PROVIDER / "provider.mjs"), str(port), "unused-console-client",
         "https://127.0.0.1/unused", str(setup)], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    issuer = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{issuer}/.well-known/openid-configuration"), 30,
                 what="the OIDC provider")
        yield issuer
    finally:
        node.terminate()
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _form(page: requests.Response) -> tuple[str, dict]:
    """The action and fields of the page's (first) form."""
    match = re.search(r"<form[^>]*action=\"([^\"]+)\"(.*?)</form>", page.text, re.S)
    assert match, f"no form at {page.url}: {page.text[:300]}"
    fields = {unescape(name): unescape(value) for name, value in re.findall(
        r"<input[^>]*name=\"([^\"]+)\"[^>]*value=\"([^\"]*)\"", match.group(2))}
    return urljoin(page.url, unescape(match.group(1))), fields


def browser_login(url: str, username: str,
                  browser: requests.Session | None = None) -> requests.Response:
    """Follow an authorization URL (or a page that redirects to one) through the provider's
    login form and consent page, as a browser does, to the redirect URI (which answers the
    last request); ``browser`` keeps its cookies."""
    browser = browser or requests.Session()
    page = browser.get(url, timeout=30)
    action, fields = _form(page)
    page = browser.post(action, data={**fields, "login": username, "password": "any"},
                        timeout=30)
    action, fields = _form(page)  # the consent page: "Continue"
    return browser.post(action, data=fields, timeout=30)
