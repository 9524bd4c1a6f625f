"""A Repository's credentials go only where they were given for: a caller who sees only
``*****`` cannot point them at another host, they never travel over plain HTTP to a host not
allowed for it, and they never sit inside a URL (where every reader and ``ps`` would see them).
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.django_db

SECRET = "s3cret-9f2e1d"


class _Recorder(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.seen.append(self.headers.get("Authorization"))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def attacker():
    """A plain-HTTP server on loopback that records the Authorization headers it is sent."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def repo(name, spec):
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Repository",
            "metadata": {"name": name}, "spec": spec}


def create(api, name, spec):
    response = api.post("/api/v1/repositories", repo(name, spec), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def assert_status_400(response, *fragments):
    body = response.json()
    assert response.status_code == 400, body
    assert body["kind"] == "Status" and body["code"] == 400
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    assert SECRET not in response.content.decode()


@pytest.fixture
def spied_commands(monkeypatch):
    lines: list[str] = []
    real = subprocess.run

    def spy(args, *a, **kw):
        lines.append(" ".join(map(str, args)))
        return real(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy)
    return lines


# -- credential replay -----------------------------------------------------------------------


def test_the_masked_secret_sent_back_with_a_new_url_is_refused_and_never_reaches_the_new_host(
        api, attacker):
    from repos.models import Repository
    from repos.tasks import check_repository

    create(api, "private", {"type": "http", "url": "https://config.example.com/base",
                            "httpConfig": {"username": "ops", "password": SECRET}})
    shown = api.get("/api/v1/repositories/private").json()
    assert shown["spec"]["httpConfig"]["password"] == "*****"

    # Replay: the masked spec, pointed at a host of the caller's choosing.
    stolen = dict(shown["spec"], url=f"http://127.0.0.1:{attacker.server_port}/")
    response = api.put("/api/v1/repositories/private", repo("private", stolen), format="json")
    assert_status_400(response, "spec.httpConfig.password", "must be given again")
    # The same through a JSON Patch of the URL alone.
    response = api.generic("PATCH", "/api/v1/repositories/private",
                           '[{"op":"replace","path":"/spec/url","value":"https://evil.example/"}]',
                           content_type="application/json-patch+json")
    assert_status_400(response, "must be given again")
    stored = Repository.objects.get(name="private")
    assert stored.spec["url"] == "https://config.example.com/base"
    check_repository({"org_id": str(stored.org_id), "name": "private"})
    assert attacker.seen == []

    # Unchanged destination: the mask keeps the secret, as before.
    assert api.put("/api/v1/repositories/private", repo("private", dict(
        shown["spec"], validationSuffix="/x")), format="json").status_code == 200
    # A new destination with the secret given again is fine.
    moved = dict(shown["spec"], url=f"http://127.0.0.1:{attacker.server_port}/",
                 httpConfig={"username": "ops", "password": "given-again"})
    assert api.put("/api/v1/repositories/private", repo("private", moved),
                   format="json").status_code == 200
    check_repository({"org_id": str(stored.org_id), "name": "private"})
    assert attacker.seen and attacker.seen[-1].startswith("Basic ")


def test_an_oci_registry_or_scheme_change_needs_the_password_again(api, settings):
    settings.FLIGHTCTL = dataclasses.replace(  # plain HTTP allowed: the replay is the refusal
        settings.FLIGHTCTL, plain_http_credential_hosts=["quay.example.com"])
    create(api, "reg", {"type": "oci", "registry": "quay.example.com", "ociAuth": {
        "authType": "docker", "username": "u", "password": SECRET}})
    shown = api.get("/api/v1/repositories/reg").json()["spec"]
    for change in ({"registry": "evil.example.com"}, {"scheme": "http"}):
        response = api.put("/api/v1/repositories/reg", repo("reg", {**shown, **change}),
                           format="json")
        assert_status_400(response, "spec.ociAuth.password", "must be given again")
    ssh = create(api, "ssh", {"type": "git", "url": "ssh://git@git.example.com/a.git",
                              "sshConfig": {"sshPrivateKey": "a2V5"}})["spec"]
    response = api.put("/api/v1/repositories/ssh", repo("ssh", dict(
        ssh, url="ssh://git@evil.example.com/a.git")), format="json")
    assert_status_400(response, "spec.sshConfig.sshPrivateKey", "must be given again")


# -- plain HTTP ------------------------------------------------------------------------------


def test_credentials_over_plain_http_are_refused_unless_the_host_is_allowed(api, settings):
    for name, spec in {
        "basic": {"type": "git", "url": "http://git.example.com/r.git",
                  "httpConfig": {"username": "u", "password": SECRET}},
        "token": {"type": "http", "url": "http://files.example.com/",
                  "httpConfig": {"token": SECRET}},
        "oci": {"type": "oci", "registry": "registry.example.com:5000", "scheme": "http",
                "ociAuth": {"authType": "docker", "username": "u", "password": SECRET}},
    }.items():
        response = api.post("/api/v1/repositories", repo(name, spec), format="json")
        assert_status_400(response, "plain HTTP", "plain_http_credential_hosts")
    # Without credentials plain HTTP is fine; loopback is allowed by default.
    create(api, "anon", {"type": "http", "url": "http://files.example.com/"})
    create(api, "local", {"type": "http", "url": "http://127.0.0.1:1/",
                          "httpConfig": {"token": SECRET}})
    settings.FLIGHTCTL = dataclasses.replace(
        settings.FLIGHTCTL, plain_http_credential_hosts=["registry.example.com"])
    create(api, "oci", {"type": "oci", "registry": "registry.example.com:5000",
                        "scheme": "http", "ociAuth": {"authType": "docker", "username": "u",
                                                      "password": SECRET}})


def test_a_stored_repository_that_breaks_the_rules_is_not_used(api, spied_commands):
    """Rows written before the rules (or by hand) are refused each time they would be used."""
    from flightctl.models import DEFAULT_ORG_ID
    from repos.crypto import seal
    from repos.models import Repository
    from repos.tasks import check_repository

    Repository.objects.create(name="old-http", spec=seal({
        "type": "git", "url": "http://git.example.com/r.git",
        "httpConfig": {"username": "u", "password": SECRET}}, None))
    Repository.objects.create(name="old-userinfo", spec={
        "type": "git", "url": f"https://u:{SECRET}@git.example.com/r.git"})
    for name, fragment in (("old-http", "plain HTTP"), ("old-userinfo", "httpConfig.username")):
        check_repository({"org_id": str(DEFAULT_ORG_ID), "name": name})
        body = api.get(f"/api/v1/repositories/{name}").json()
        condition = body["status"]["conditions"][0]
        assert condition["status"] == "False" and fragment in condition["message"], condition
        assert SECRET not in str(body)
    assert not any("ls-remote" in line for line in spied_commands), spied_commands


# -- userinfo in URLs ------------------------------------------------------------------------


@pytest.mark.parametrize("kind,url", [
    ("git", f"https://deploy:{SECRET}@git.example.com/r.git"),
    ("git", f"https://{SECRET}@git.example.com/r.git"),
    ("http", f"https://u:{SECRET}@files.example.com/"),
    ("git", f"ssh://git:{SECRET}@git.example.com/r.git"),
])
def test_credentials_in_a_repository_url_are_refused(api, kind, url):
    response = api.post("/api/v1/repositories", repo("userinfo", {"type": kind, "url": url}),
                        format="json")
    assert_status_400(response, "spec.url", "httpConfig.username")


def test_an_ssh_user_name_is_not_a_credential(api):
    create(api, "ssh-user", {"type": "git", "url": "ssh://git@git.example.com/r.git"})
    create(api, "scp-like", {"type": "git", "url": "git@git.example.com:org/r.git"})


def test_a_resource_sync_on_a_url_with_credentials_runs_no_git(api, spied_commands):
    from flightctl.models import DEFAULT_ORG_ID
    from repos.models import Repository
    from repos.tasks import run_resource_sync

    Repository.objects.create(name="gitops", spec={
        "type": "git", "url": f"https://u:{SECRET}@git.example.com/r.git"})
    assert api.post("/api/v1/resourcesyncs", {"metadata": {"name": "rs"}, "spec": {
        "repository": "gitops", "targetRevision": "main", "path": "/"}},
        format="json").status_code == 201
    run_resource_sync({"org_id": str(DEFAULT_ORG_ID), "name": "rs"})
    body = api.get("/api/v1/resourcesyncs/rs").json()
    accessible = body["status"]["conditions"][0]
    assert accessible["status"] == "False" and "httpConfig.username" in accessible["message"]
    assert not any(SECRET in line for line in spied_commands), spied_commands
    assert not any(line.startswith("git fetch") for line in spied_commands)
    listed = api.get("/api/v1/repositories/gitops").json()
    assert SECRET not in listed["spec"]["url"] and "*****" in listed["spec"]["url"]
