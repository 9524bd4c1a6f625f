"""Configuration from git and HTTP: rendered server-side, frozen per TemplateVersion, synced.

Handlers run in-process on the test database (as in test_rollouts.py); the git and HTTP
servers are real processes on loopback.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("tests.gitservers")

from tests.gitservers import FILE_TOKEN  # noqa: E402

pytest_plugins = ["tests.gitservers"]
pytestmark = pytest.mark.django_db


def org() -> str:
    from flightctl.models import DEFAULT_ORG_ID

    return str(DEFAULT_ORG_ID)


def put(api, plural: str, name: str, body: dict) -> dict:
    response = api.put(f"/api/v1/{plural}/{name}", {"metadata": {"name": name, **body.get(
        "metadata", {})}, **{k: v for k, v in body.items() if k != "metadata"}}, format="json")
    assert response.status_code in (200, 201), response.json()
    return response.json()


def device(api, name: str, labels: dict, spec: dict | None = None) -> None:
    body = {"metadata": {"labels": labels}}
    if spec is not None:
        body["spec"] = spec
    put(api, "devices", name, body)
    from devices.tasks import match_device

    match_device({"org_id": org(), "name": name})


def fleet(api, name: str, providers: list, selector: dict) -> None:
    put(api, "fleets", name, {"spec": {"selector": {"matchLabels": selector},
                                       "template": {"spec": {"config": providers}}}})
    from fleets.tasks import validate_fleet

    validate_fleet({"org_id": org(), "name": name})


def files(name: str) -> dict[str, str]:
    """What the agent of device ``name`` receives: path -> content."""
    from devices.models import Device

    rendered = Device.objects.get(name=name).rendered_spec or {}
    inline = (rendered.get("config") or [{}])[0].get("inline", []) if rendered.get(
        "config") else []
    return {f["path"]: f["content"] for f in inline}


def spec_valid(name: str) -> dict:
    from devices.models import Device

    conditions = Device.objects.get(name=name).service_conditions
    return next(c for c in conditions if c["type"] == "SpecValid")


def template_versions(api, name: str) -> list[str]:
    body = api.get(f"/api/v1/fleets/{name}/templateversions").json()
    return [tv["metadata"]["name"] for tv in body["items"]]


def git_provider(revision: str = "main", path: str = "/device", repository: str = "cfg"):
    return {"name": "cfg", "gitRef": {"repository": repository, "targetRevision": revision,
                                      "path": path}}


@pytest.fixture
def config_repo(api, make_repo, git_daemon):
    repo = make_repo()
    repo.commit({"device/etc/app/app.conf": "level=1\n", "device/etc/motd": "hello\n",
                 "README": "not for devices"})
    put(api, "repositories", "cfg", {"spec": {"type": "git", "url": git_daemon + repo.name}})
    return repo


def test_a_fleet_takes_a_directory_from_git_and_a_new_commit_becomes_a_new_template_version(
        api, config_repo):
    from repos.dependencies import sync_all

    device(api, "dev-0", {"fleet": "f1"})
    device(api, "dev-1", {"fleet": "f1"})
    fleet(api, "f1", [git_provider()], {"fleet": "f1"})
    expected = {"/etc/app/app.conf": "level=1\n", "/etc/motd": "hello\n"}
    assert files("dev-0") == files("dev-1") == expected
    assert spec_valid("dev-0")["status"] == "True"

    # The branch moves: members keep the commit frozen for their TemplateVersion, and so does
    # a device that joins the fleet now.
    new_sha = config_repo.commit({"device/etc/app/app.conf": "level=2\n"})
    device(api, "dev-2", {"fleet": "f1"})
    assert files("dev-2") == expected
    assert template_versions(api, "f1") == ["v1"]

    # The dependency sync notices the commit: a new TemplateVersion, rolled out.
    changed = sync_all()
    assert changed["fleets"] == ["f1"]
    versions = template_versions(api, "f1")
    assert len(versions) == 2 and versions[0].startswith("v1-") and len(versions[0]) == 11
    for name in ("dev-0", "dev-1", "dev-2"):
        assert files(name) == {**expected, "/etc/app/app.conf": "level=2\n"}
    status = api.get("/api/v1/devices/dev-0").json()["status"]
    refs = status["dependencySync"]["configRefs"]
    assert refs[0]["configProviderName"] == "cfg" and refs[0]["fingerprint"] == new_sha
    body = api.get("/api/v1/events", {"fieldSelector": "reason=DependencyChangeDetected"}).json()
    details = body["items"][0]["details"]
    assert details["resourceKey"] == "git:cfg/main" and details["fingerprint"] == new_sha
    # Nothing new: nothing happens (idempotent tick).
    assert sync_all() == {"fleets": [], "devices": []}
    assert len(template_versions(api, "f1")) == 2


def test_a_templated_revision_renders_different_content_per_device(api, config_repo):
    config_repo.commit({"device/etc/motd": "staging\n"}, branch="staging")
    config_repo.commit({"device/etc/motd": "prod\n"}, branch="prod")
    device(api, "s1", {"fleet": "f2", "env": "staging"})
    device(api, "p1", {"fleet": "f2", "env": "prod"})
    fleet(api, "f2", [git_provider(revision="{{ .metadata.labels.env }}")], {"fleet": "f2"})
    assert files("s1")["/etc/motd"] == "staging\n"
    assert files("p1")["/etc/motd"] == "prod\n"


def test_a_single_file_maps_to_its_basename_and_http_content_goes_to_file_path(
        api, config_repo, file_server):
    file_server.files["/cfg/site.json"] = b'{"site": 1}'
    put(api, "repositories", "web", {"spec": {"type": "http", "url": file_server.url + "/cfg",
                                              "httpConfig": {"token": FILE_TOKEN}}})
    device(api, "dev-0", {"fleet": "f3"})
    fleet(api, "f3", [git_provider(path="/device/etc/motd"),
                      {"name": "site", "httpRef": {"repository": "web", "suffix": "/site.json",
                                                   "filePath": "/etc/site/{{ .metadata.name }}"}}],
          {"fleet": "f3"})
    assert files("dev-0") == {"/motd": "hello\n", "/etc/site/dev-0": '{"site": 1}'}

    # New HTTP content: a new TemplateVersion as well.
    from repos.dependencies import sync_all

    file_server.files["/cfg/site.json"] = b'{"site": 2}'
    assert sync_all()["fleets"] == ["f3"]
    assert files("dev-0")["/etc/site/dev-0"] == '{"site": 2}'


def test_a_standalone_device_is_rerendered_when_its_dependency_changes(api, config_repo):
    from devices.tasks import render_device
    from repos.dependencies import sync_all

    device(api, "solo", {}, spec={"config": [git_provider()]})
    render_device({"org_id": org(), "name": "solo"})
    assert files("solo")["/etc/app/app.conf"] == "level=1\n"
    config_repo.commit({"device/etc/app/app.conf": "level=3\n"})
    assert sync_all()["devices"] == ["solo"]
    render_device({"org_id": org(), "name": "solo"})  # the task sync_all enqueued
    assert files("solo")["/etc/app/app.conf"] == "level=3\n"


@pytest.mark.parametrize("provider, message", [
    (git_provider(path="/nowhere"), 'path "/nowhere" does not exist'),
    (git_provider(revision="no-such-branch"), "no-such-branch"),
])
def test_render_failures_set_spec_valid_false_with_a_clear_message(api, config_repo, provider,
                                                                   message):
    device(api, "dev-0", {"fleet": "bad"})
    fleet(api, "bad", [provider], {"fleet": "bad"})
    condition = spec_valid("dev-0")
    assert condition["status"] == "False"
    assert condition["message"].startswith('config provider "cfg": ')
    assert message in condition["message"]


def test_a_standalone_device_naming_a_missing_repository_fails_its_render(api):
    from devices.tasks import render_device

    device(api, "solo", {}, spec={"config": [git_provider(repository="missing")]})
    render_device({"org_id": org(), "name": "solo"})
    condition = spec_valid("solo")
    assert condition["status"] == "False"
    assert 'config provider "cfg": ' in condition["message"]
    assert 'Repository "missing" not found' in condition["message"]


def queued_tasks() -> list[tuple[str, dict]]:
    from django_q.models import OrmQ

    return [(q.task["args"][0], q.task["args"][1]) for q in OrmQ.objects.order_by("id")]


def fleet_events(api, name: str) -> list[str]:
    body = api.get("/api/v1/events", {"fieldSelector": f"involvedObject.kind=Fleet,"
                                                       f"involvedObject.name={name}",
                                      "order": "asc"}).json()
    return [e["reason"] for e in body["items"]]


def test_a_fleet_naming_a_missing_repository_is_invalid_until_it_exists(
        api, make_repo, git_daemon):
    """service.md §1.3: no TemplateVersion while a gitRef/httpRef names no Repository of its
    type; creating the Repository validates the fleet again, which then rolls out."""
    from django_q.models import OrmQ

    from fleets.tasks import validate_fleet

    repo = make_repo()
    repo.commit({"device/etc/motd": "hello\n"})
    put(api, "repositories", "web", {"spec": {"type": "http", "url": "http://127.0.0.1:1"}})
    device(api, "dev-0", {"fleet": "f"})
    fleet(api, "f", [git_provider(repository="missing"),
                     {"name": "site", "httpRef": {"repository": "web", "filePath": "/etc/x"}},
                     {"name": "other", "httpRef": {"repository": "cfg2", "filePath": "/etc/y"}}],
          {"fleet": "f"})
    body = api.get("/api/v1/fleets/f").json()
    valid = next(c for c in body["status"]["conditions"] if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "Invalid")
    assert valid["message"] == (
        "2 invalid configuration(s): cfg, other. First error: failed fetching specified "
        'Repository definition missing: Repository of name "missing" not found')
    assert template_versions(api, "f") == []
    assert fleet_events(api, "f").count("FleetInvalid") == 1

    # Of the wrong type is no better.
    put(api, "repositories", "missing", {"spec": {"type": "http", "url": "http://127.0.0.1:1"}})
    put(api, "repositories", "cfg2", {"spec": {"type": "http", "url": "http://127.0.0.1:1"}})
    validate_fleet({"org_id": org(), "name": "f"})
    valid = next(c for c in api.get("/api/v1/fleets/f").json()["status"]["conditions"]
                 if c["type"] == "Valid")
    assert valid["message"] == (
        '1 invalid configuration(s): cfg. First error: Repository "missing" is of type "http", '
        "but gitRef needs a git repository")
    assert fleet_events(api, "f").count("FleetInvalid") == 1  # still invalid: no new event

    OrmQ.objects.all().delete()
    put(api, "repositories", "missing", {"spec": {"type": "git", "url": git_daemon + repo.name}})
    assert ("fleet-validate", {"org_id": org(), "name": "f", "kind": "Fleet"}) in queued_tasks()
    assert "ReferencedRepositoryUpdated" in fleet_events(api, "f")
    validate_fleet({"org_id": org(), "name": "f"})  # the task the Repository's write queued
    assert template_versions(api, "f") == ["v1"]
    valid = next(c for c in api.get("/api/v1/fleets/f").json()["status"]["conditions"]
                 if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("True", "Valid")
    assert fleet_events(api, "f")[-1] != "FleetInvalid" and "FleetValid" in fleet_events(api, "f")
    from devices.models import Device

    annotations = Device.objects.get(name="dev-0").annotations
    assert annotations["fleet-controller/templateVersion"] == "v1"  # the rollout reached it


def test_git_files_under_agent_owned_paths_are_refused(api, make_repo, git_daemon):
    repo = make_repo()
    repo.commit({"root/var/lib/flightctl/x": "no"})
    put(api, "repositories", "cfg", {"spec": {"type": "git", "url": git_daemon + repo.name}})
    device(api, "dev-0", {"fleet": "f"})
    fleet(api, "f", [git_provider(path="/root")], {"fleet": "f"})
    assert "forbidden device path" in spec_valid("dev-0")["message"]
