"""Repositories against real servers on loopback: credentials, accessibility, secrets."""

from __future__ import annotations

import base64

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

REPOS = "/api/v1/repositories"


def put_repo(api, name: str, spec: dict, expect=(200, 201)) -> dict:
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Repository",
            "metadata": {"name": name}, "spec": spec}
    response = api.put(f"{REPOS}/{name}", body, format="json")
    assert response.status_code in expect, response.json()
    return response.json()


def check(api, name: str) -> dict:
    """Run the periodic accessibility test of one repository; return its condition."""
    from flightctl.models import DEFAULT_ORG_ID
    from repos.tasks import check_repository

    check_repository({"org_id": str(DEFAULT_ORG_ID), "name": name})
    conditions = api.get(f"{REPOS}/{name}").json()["status"]["conditions"]
    return next(c for c in conditions if c["type"] == "Accessible")


def events(api, name: str) -> list[str]:
    body = api.get("/api/v1/events", {"fieldSelector": f"involvedObject.name={name}",
                                      "order": "asc"}).json()
    return [e["reason"] for e in body["items"]]


# -- the kind ---------------------------------------------------------------------------------


def test_the_reference_examples_are_accepted_and_listed_by_type(api):
    import yaml

    from tests.conftest import REFERENCE

    for path in sorted((REFERENCE / "examples").glob("repository-*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            put_repo(api, doc["metadata"]["name"], doc["spec"], expect=(201,))
    listed = api.get(REPOS, {"fieldSelector": "spec.type=oci"}).json()
    assert {i["metadata"]["name"] for i in listed["items"]} == {"quay-io", "my-registry"}
    assert listed["kind"] == "RepositoryList"
    one = api.get(f"{REPOS}/my-registry").json()
    assert one["spec"]["ociAuth"] == {"authType": "docker", "username": "my-username",
                                      "password": "*****"}
    assert one["status"] == {"conditions": []}


@pytest.mark.parametrize("spec, fragment", [
    ({"type": "git"}, "spec.url: Required value"),
    ({"type": "svn", "url": "x"}, 'spec.type: Unsupported value: "svn"'),
    ({"type": "git", "url": "/etc"}, "spec.url: Invalid value"),
    ({"type": "git", "url": "https://h/r.git", "httpConfig": {"username": "u"}},
     "spec.httpConfig.password: Required value"),
    ({"type": "git", "url": "ssh://h/r.git", "httpConfig": {}, "sshConfig": {}},
     "httpConfig and sshConfig may not both be given"),
    ({"type": "oci", "registry": "bad host!"}, "spec.registry: Invalid value"),
    ({"type": "git", "url": "https://h/r", "httpConfig": {"tls.crt": "%%", "tls.key": "s3cr3t"}},
     'spec.httpConfig.tls.crt: Invalid value: "<redacted>"'),
])
def test_invalid_specs_are_refused_with_field_errors(api, spec, fragment):
    response = api.post(REPOS, {"metadata": {"name": "r"}, "spec": spec}, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert "s3cr3t" not in response.json()["message"]


def test_secrets_are_masked_kept_on_mask_and_encrypted_at_rest(api, repos_data_dir):
    from repos.crypto import key_path
    from repos.models import Repository

    spec = {"type": "git", "url": "https://example.com/r.git",
            "httpConfig": {"username": "u", "password": "pw-first-1d2e"}}
    created = put_repo(api, "r", spec, expect=(201,))
    assert created["spec"]["httpConfig"] == {"username": "u", "password": "*****"}
    stored = Repository.objects.get(name="r").spec["httpConfig"]["password"]
    assert stored.startswith("enc:v1:") and "pw-first" not in stored
    assert oct(key_path().stat().st_mode & 0o777) == "0o600"

    # Sending the mask back (as `flightctl apply` of a fetched object does) keeps the secret
    # and is no change at all.
    again = put_repo(api, "r", created["spec"])
    assert again["metadata"]["generation"] == 1
    assert Repository.objects.get(name="r").spec["httpConfig"]["password"] == stored
    # Sending the same secret in clear is no change either; a new one is.
    assert put_repo(api, "r", spec)["metadata"]["generation"] == 1
    spec["httpConfig"]["password"] = "pw-second-9a8b"
    assert put_repo(api, "r", spec)["metadata"]["generation"] == 2
    from repos.crypto import unseal

    assert unseal(Repository.objects.get(name="r").spec)["httpConfig"]["password"] == (
        "pw-second-9a8b")
    # A mask with nothing stored behind it is an error, not a literal password.
    response = api.post(REPOS, {"metadata": {"name": "n"}, "spec": {
        "type": "oci", "registry": "quay.io",
        "ociAuth": {"authType": "docker", "username": "u", "password": "*****"}}},
        format="json")
    assert response.status_code == 400 and "no stored secret" in response.json()["message"]


def test_json_patch_keeps_masked_secrets(api):
    from tests.conftest import patch

    put_repo(api, "r", {"type": "http", "url": "https://example.com",
                        "httpConfig": {"token": "tok-abc-123"}})
    response = patch(api, f"{REPOS}/r", [{"op": "add", "path": "/spec/validationSuffix",
                                          "value": "/health"}])
    assert response.status_code == 200, response.json()
    from repos.crypto import unseal
    from repos.models import Repository

    assert unseal(Repository.objects.get(name="r").spec)["httpConfig"]["token"] == "tok-abc-123"


# -- accessibility against real servers ---------------------------------------------------------


def test_git_daemon_repository_is_accessible_and_a_missing_one_is_not(api, make_repo,
                                                                     git_daemon):
    repo = make_repo()
    repo.commit({"README": "hello"})
    put_repo(api, "daemon", {"type": "git", "url": git_daemon + repo.name})
    assert check(api, "daemon")["status"] == "True"
    put_repo(api, "daemon", {"type": "git", "url": git_daemon + "does-not-exist"})
    condition = check(api, "daemon")
    assert condition["status"] == "False" and condition["reason"] == "Inaccessible"
    assert "does-not-exist" in condition["message"] or "not" in condition["message"]
    assert events(api, "daemon").count("RepositoryAccessible") == 1
    assert events(api, "daemon").count("RepositoryInaccessible") == 1


def test_smart_http_with_basic_auth(api, make_repo, git_http):
    repo = make_repo()
    repo.commit({"README": "hello"})
    url = f"{git_http.url}/{repo.name}"
    put_repo(api, "h", {"type": "git", "url": url,
                        "httpConfig": {"username": GIT_USER, "password": "wrong-password"}})
    condition = check(api, "h")
    assert condition["status"] == "False"
    assert "Authentication failed" in condition["message"] or "authentication" in condition[
        "message"]
    put_repo(api, "h", {"type": "git", "url": url,
                        "httpConfig": {"username": GIT_USER, "password": GIT_PASSWORD}})
    condition = check(api, "h")
    assert (condition["status"], condition["reason"]) == ("True", "Accessible")
    assert events(api, "h")[-1] == "RepositoryAccessible"
    # No credentials at all: the server's 401 is reported, not a hang on a prompt.
    put_repo(api, "anon", {"type": "git", "url": url})
    assert "authentication required" in check(api, "anon")["message"]


def test_ssh_repository_with_key_passphrase_and_known_hosts(api, make_repo, ssh_server,
                                                           settings, tmp_path, monkeypatch):
    def known_hosts(path):
        monkeypatch.setattr(settings.FLIGHTCTL, "ssh_known_hosts_file", str(path))

    repo = make_repo()
    repo.commit({"README": "hello"})
    url = ssh_server.url + repo.name
    ssh = {"sshPrivateKey": ssh_server.private_key_b64,
           "privateKeyPassphrase": ssh_server.passphrase}
    # The server's host key is not known yet: refused.
    known_hosts(tmp_path / "empty_known_hosts")
    put_repo(api, "s", {"type": "git", "url": url, "sshConfig": ssh})
    condition = check(api, "s")
    assert condition["status"] == "False" and "Host key verification failed" in condition[
        "message"]
    known_hosts(ssh_server.known_hosts)
    assert check(api, "s")["status"] == "True"
    # A wrong passphrase cannot unlock the key.
    put_repo(api, "s", {"type": "git", "url": url,
                        "sshConfig": {**ssh, "privateKeyPassphrase": "not-it"}})
    assert check(api, "s")["status"] == "False"
    # skipServerVerification works without known hosts.
    known_hosts(tmp_path / "empty_known_hosts")
    put_repo(api, "s", {"type": "git", "url": url,
                        "sshConfig": {**ssh, "skipServerVerification": True}})
    assert check(api, "s")["status"] == "True"


def test_http_repository_with_bearer_token(api, file_server):
    file_server.files["/health"] = b"ok"
    put_repo(api, "f", {"type": "http", "url": file_server.url, "validationSuffix": "/health",
                        "httpConfig": {"token": "not-the-token"}})
    condition = check(api, "f")
    assert condition["status"] == "False" and "401" in condition["message"]
    put_repo(api, "f", {"type": "http", "url": file_server.url, "validationSuffix": "/health",
                        "httpConfig": {"token": FILE_TOKEN}})
    assert check(api, "f")["status"] == "True"


def test_oci_registry_with_docker_auth(api, oci_registry):
    def oci(password):
        spec = {"type": "oci", "registry": oci_registry, "scheme": "http"}
        if password:
            spec["ociAuth"] = {"authType": "docker", "username": REGISTRY_USER,
                               "password": password}
        return spec

    put_repo(api, "o", oci(None))
    assert "requires credentials" in check(api, "o")["message"]
    put_repo(api, "o", oci("wrong-password"))
    condition = check(api, "o")
    assert condition["status"] == "False" and "401" in condition["message"]
    put_repo(api, "o", oci(REGISTRY_PASSWORD))
    assert check(api, "o")["status"] == "True"


def test_client_certificate_and_ca_go_to_git_as_files_not_arguments(monkeypatch):
    """Basic auth, tokens, certificates: nothing secret on git's command line."""
    import subprocess

    from repos import git

    seen = []
    real_run = subprocess.run

    def spy(args, **kwargs):
        seen.append((list(args), dict(kwargs.get("env") or {})))
        return real_run(["true"], capture_output=True)

    monkeypatch.setattr(subprocess, "run", spy)
    secret_crt = base64.b64encode(b"CERT-SECRET").decode()
    secret_key = base64.b64encode(b"KEY-SECRET").decode()
    git.ls_remote({"type": "git", "url": "https://example.com/r.git",
                   "httpConfig": {"token": "TOKEN-SECRET", "tls.crt": secret_crt,
                                  "tls.key": secret_key, "ca.crt": secret_crt}})
    args, env = seen[0]
    assert not any("SECRET" in a for a in args)
    values = {env[k] for k in env if k.startswith("GIT_CONFIG_VALUE_")}
    assert "Authorization: Bearer TOKEN-SECRET" in values
    assert {k for k in env if k.startswith("GIT_CONFIG_KEY_")} and any(
        v.endswith("tls.key") for v in values)
