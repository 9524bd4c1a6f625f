"""No repository secret appears in clear text in any API response, event, log line, command
line or database row — after a scenario that uses every kind of credential, right and wrong."""

from __future__ import annotations

import base64
import json
import logging
import subprocess

import pytest

pytest.register_assert_rewrite("tests.gitservers")

from tests.gitservers import (  # noqa: E402
    FILE_TOKEN,
    GIT_PASSWORD,
    GIT_USER,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
)

pytest_plugins = ["tests.gitservers", "tests.registries"]
pytestmark = pytest.mark.django_db

WRONG = "wrong-secret-0c4f7a2e"
FAKE_TLS_KEY = "fake-tls-key-8d1e5b"
FAKE_TLS_CRT = "fake-tls-crt-3a9c64"


def test_secrets_never_leave_in_clear_text(api, make_repo, git_http, ssh_server,
                                           file_server, oci_registry, caplog, monkeypatch,
                                           settings):
    from django.db import connection

    from devices.tasks import match_device
    from fleets.tasks import validate_fleet
    from flightctl.models import DEFAULT_ORG_ID
    from repos.dependencies import sync_all
    from repos.tasks import check_repository, run_resource_sync

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django-q")  # quiet by default; seen here anyway
    command_lines: list[str] = []
    real_run = subprocess.run

    def spy_run(args, *a, **kw):
        command_lines.append(" ".join(map(str, args)))
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", spy_run)
    monkeypatch.setattr(settings.FLIGHTCTL, "ssh_known_hosts_file", str(ssh_server.known_hosts))
    org = str(DEFAULT_ORG_ID)
    repo = make_repo()
    repo.commit({"device/etc/motd": "hi\n", "fleets/f.yaml": (
        "kind: Fleet\nmetadata: {name: gitops}\nspec:\n  selector: {matchLabels: {x: y}}\n"
        "  template: {spec: {os: {image: quay.io/o/i:1}}}\n")})
    file_server.files["/health"] = b"ok"
    ssh_secrets = [ssh_server.private_key_b64, ssh_server.passphrase,
                   base64.b64decode(ssh_server.private_key_b64).decode().splitlines()[1]]
    secrets = [GIT_PASSWORD, FILE_TOKEN, REGISTRY_PASSWORD, WRONG, FAKE_TLS_KEY, FAKE_TLS_CRT,
               *ssh_secrets]

    specs = {
        "basic": {"type": "git", "url": f"{git_http.url}/{repo.name}",
                  "httpConfig": {"username": GIT_USER, "password": GIT_PASSWORD}},
        "basic-wrong": {"type": "git", "url": f"{git_http.url}/{repo.name}",
                        "httpConfig": {"username": GIT_USER, "password": WRONG}},
        "ssh": {"type": "git", "url": ssh_server.url + repo.name,
                "sshConfig": {"sshPrivateKey": ssh_server.private_key_b64,
                              "privateKeyPassphrase": ssh_server.passphrase}},
        "token": {"type": "http", "url": file_server.url, "validationSuffix": "/health",
                  "httpConfig": {"token": FILE_TOKEN}},
        "token-wrong": {"type": "http", "url": file_server.url,
                        "httpConfig": {"token": WRONG}},
        "tls": {"type": "http", "url": "https://127.0.0.1:1/", "httpConfig": {
            "tls.crt": base64.b64encode(FAKE_TLS_CRT.encode()).decode(),
            "tls.key": base64.b64encode(FAKE_TLS_KEY.encode()).decode()}},
        "oci": {"type": "oci", "registry": oci_registry, "scheme": "http", "ociAuth": {
            "authType": "docker", "username": REGISTRY_USER, "password": REGISTRY_PASSWORD}},
        "oci-wrong": {"type": "oci", "registry": oci_registry, "scheme": "http", "ociAuth": {
            "authType": "docker", "username": REGISTRY_USER, "password": WRONG}},
    }
    # Base64 of the fake TLS material is what is stored; check that form too.
    secrets += [specs["tls"]["httpConfig"]["tls.crt"], specs["tls"]["httpConfig"]["tls.key"]]
    responses = []
    for name, spec in specs.items():
        response = api.post("/api/v1/repositories", {"metadata": {"name": name}, "spec": spec},
                            format="json")
        assert response.status_code == 201, response.json()
        responses.append(response.content)
        check_repository({"org_id": org, "name": name})
    accessible = {}
    for name in specs:
        body = api.get(f"/api/v1/repositories/{name}").json()
        accessible[name] = body["status"]["conditions"][0]["status"]
    assert accessible == {"basic": "True", "basic-wrong": "False", "ssh": "True",
                          "token": "True", "token-wrong": "False", "tls": "False",
                          "oci": "True", "oci-wrong": "False"}

    # Use the credentials for real: render from git over authenticated HTTP and SSH, sync.
    for index, source in enumerate(("basic", "ssh")):
        name = f"dev-{index}"
        api.put(f"/api/v1/devices/{name}", {"metadata": {"name": name,
                                                         "labels": {"fleet": source}}},
                format="json")
        match_device({"org_id": org, "name": name})
        assert api.post("/api/v1/fleets", {"metadata": {"name": source}, "spec": {
            "selector": {"matchLabels": {"fleet": source}}, "template": {"spec": {"config": [
                {"name": "c", "gitRef": {"repository": source, "targetRevision": "main",
                                         "path": "/device"}}]}}}},
            format="json").status_code == 201
        validate_fleet({"org_id": org, "name": source})
    assert api.post("/api/v1/resourcesyncs", {"metadata": {"name": "rs"}, "spec": {
        "repository": "basic", "targetRevision": "main", "path": "/fleets"}},
        format="json").status_code == 201
    run_resource_sync({"org_id": org, "name": "rs"})
    sync_all()

    from devices.models import Device

    assert [d.rendered_spec["config"][0]["inline"][0]["content"]
            for d in Device.objects.order_by("name")] == ["hi\n", "hi\n"]
    assert "gitops" in {f["metadata"]["name"] for f in api.get("/api/v1/fleets").json()["items"]}

    for url in ("/api/v1/repositories", "/api/v1/events?limit=1000", "/api/v1/resourcesyncs",
                "/api/v1/devices", "/api/v1/fleets"):
        responses.append(api.get(url).content)
    with connection.cursor() as cursor:
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE "
                       "table_schema = current_schema() AND table_type = 'BASE TABLE'")
        tables = [row[0] for row in cursor.fetchall()]
        dump = []
        for table in tables:
            cursor.execute(f'SELECT CAST(t AS text) FROM "{table}" t')  # noqa: S608
            dump.extend(row[0] for row in cursor.fetchall())
    places = {
        "API responses": b"\n".join(responses).decode(),
        "log lines": "\n".join(record.getMessage() for record in caplog.records),
        "command lines": "\n".join(command_lines),
        "database": "\n".join(dump),
    }
    # The places looked at really hold the scenario (the secrets are there, encrypted).
    assert "enc:v1:" in places["database"] and "*****" in places["API responses"]
    assert "ls-remote" in places["command lines"] and "Enqueued" in places["log lines"]
    leaks = [(secret[:12], place) for secret in secrets for place, text in places.items()
             if secret in text or json.dumps(secret)[1:-1] in text]
    assert leaks == []
