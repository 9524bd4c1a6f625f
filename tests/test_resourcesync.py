"""ResourceSync against a real git server: create, update, prune, refuse, orphan."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["tests.gitservers"]
pytestmark = pytest.mark.django_db

RS = "/api/v1/resourcesyncs"


def fleet_yaml(name: str, image: str = "quay.io/org/os:1", extra: str = "") -> str:
    return (f"apiVersion: flightctl.io/v1beta1\nkind: Fleet\nmetadata:\n  name: {name}\n"
            f"spec:\n  selector:\n    matchLabels:\n      fleet: {name}\n{extra}"
            f"  template:\n    spec:\n      os:\n        image: {image}\n")


def fleet_json(name: str) -> str:
    return json.dumps({"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet",
                       "metadata": {"name": name},
                       "spec": {"selector": {"matchLabels": {"fleet": name}},
                                "template": {"spec": {"os": {"image": "quay.io/org/os:1"}}}}})


def run(name: str = "rs") -> None:
    from flightctl.models import DEFAULT_ORG_ID
    from repos.tasks import run_resource_sync

    run_resource_sync({"org_id": str(DEFAULT_ORG_ID), "name": name})


def conditions(api, name: str = "rs") -> dict:
    body = api.get(f"{RS}/{name}").json()
    return {c["type"]: (c["status"], c["message"]) for c in body["status"]["conditions"]}


def fleets(api) -> dict:
    body = api.get("/api/v1/fleets").json()
    return {f["metadata"]["name"]: f for f in body["items"]}


@pytest.fixture
def gitops(api, make_repo, git_daemon):
    repo = make_repo()
    # Multi-document YAML (with a kind ResourceSync leaves alone), JSON in a subdirectory,
    # and a file that is not a manifest.
    repo.commit({
        "fleets/a.yaml": fleet_yaml("a") + "---\napiVersion: v1\nkind: ConfigMap\n"
                                           "metadata:\n  name: not-ours\n",
        "fleets/more/b.json": fleet_json("b"),
        "fleets/README.md": "# fleets\n",
    })
    assert api.post("/api/v1/repositories", {"metadata": {"name": "git"}, "spec": {
        "type": "git", "url": git_daemon + repo.name}}, format="json").status_code == 201
    return repo


def create_rs(api, name="rs", path="/fleets"):
    response = api.post(RS, {"apiVersion": "flightctl.io/v1beta1", "kind": "ResourceSync",
                             "metadata": {"name": name},
                             "spec": {"repository": "git", "targetRevision": "main",
                                      "path": path}}, format="json")
    assert response.status_code == 201, response.json()


def test_a_directory_of_two_fleets_is_created_updated_and_pruned(api, gitops):
    create_rs(api)
    run()
    found = fleets(api)
    assert set(found) == {"a", "b"}
    assert {f["metadata"]["owner"] for f in found.values()} == {"ResourceSync/rs"}
    assert conditions(api) == {"Accessible": ("True", "Repository is accessible"),
                               "ResourceParsed": ("True", "2 resource(s) parsed"),
                               "Synced": ("True", "Repository synced successfully")}
    first = api.get(f"{RS}/rs").json()["status"]
    assert len(first["observedCommit"]) == 40 and first["observedGeneration"] == 1

    # Owned fleets are edited through git only.
    body = found["a"]
    body["spec"]["template"]["spec"]["os"]["image"] = "quay.io/org/os:hacked"
    assert api.put("/api/v1/fleets/a", body, format="json").status_code == 409
    assert api.delete("/api/v1/fleets/a").status_code == 409

    sha = gitops.commit({"fleets/a.yaml": fleet_yaml("a", image="quay.io/org/os:2"),
                         "fleets/more/b.json": None})
    run()
    found = fleets(api)
    assert set(found) == {"a"}
    assert found["a"]["spec"]["template"]["spec"]["os"]["image"] == "quay.io/org/os:2"
    assert found["a"]["metadata"]["generation"] == 2
    assert api.get(f"{RS}/rs").json()["status"]["observedCommit"] == sha
    reasons = [e["reason"] for e in api.get("/api/v1/events", {
        "fieldSelector": "involvedObject.kind=Fleet", "order": "asc"}).json()["items"]]
    assert reasons.count("ResourceCreated") == 2 and "ResourceDeleted" in reasons
    updated = api.get("/api/v1/events", {"fieldSelector": "reason=ResourceUpdated,"
                                         "involvedObject.name=a"}).json()["items"][0]
    assert updated["details"]["updatedFields"] == ["spec.template"]
    assert updated["actor"] == "service:resourcesync/rs"
    # The same commit again changes nothing.
    version = found["a"]["metadata"]["resourceVersion"]
    run()
    assert fleets(api)["a"]["metadata"]["resourceVersion"] == version


def test_a_malformed_file_stops_the_sync_and_changes_nothing(api, gitops):
    create_rs(api)
    run()
    before = fleets(api)
    gitops.commit({"fleets/a.yaml": fleet_yaml("a", image="quay.io/org/os:3"),
                   "fleets/broken.yaml": "kind: Fleet\nmetadata: {name: c}\nspec: [oops\n"})
    run()
    state = conditions(api)
    assert state["ResourceParsed"][0] == "False" and "broken.yaml" in state["ResourceParsed"][1]
    assert state["Synced"][0] == "False"
    assert fleets(api) == before
    # An invalid fleet is reported with the API's own validation message.
    gitops.commit({"fleets/broken.yaml": fleet_yaml("c", image="")})
    run()
    assert "Fleet/c" in conditions(api)["ResourceParsed"][1]
    assert set(fleets(api)) == {"a", "b"}
    reasons = [e["reason"] for e in api.get("/api/v1/events", {
        "fieldSelector": "involvedObject.kind=ResourceSync", "order": "asc"}).json()["items"]]
    assert "ResourceSyncParsingFailed" in reasons and "ResourceSyncCommitDetected" in reasons


def test_names_owned_by_another_sync_are_refused_and_deleting_a_sync_orphans_its_fleets(
        api, gitops):
    create_rs(api)
    run()
    create_rs(api, name="other", path="/fleets/a.yaml")
    run("other")
    synced = conditions(api, "other")["Synced"]
    assert synced[0] == "False" and "owned by ResourceSync/rs" in synced[1]
    assert fleets(api)["a"]["metadata"]["owner"] == "ResourceSync/rs"

    assert api.delete(f"{RS}/rs").status_code == 200
    found = fleets(api)
    assert set(found) == {"a", "b"} and not any(
        f["metadata"].get("owner") for f in found.values())
    # The other sync may now take fleet a.
    run("other")
    assert conditions(api, "other")["Synced"][0] == "True"
    assert fleets(api)["a"]["metadata"]["owner"] == "ResourceSync/other"


def test_ignored_fields_keep_the_servers_value(api, gitops, settings, monkeypatch):
    monkeypatch.setattr(settings.FLIGHTCTL, "resource_sync_ignore",
                        ["/metadata/resourceVersion", "/spec/rolloutPolicy"])
    policy = {"disruptionBudget": {"maxUnavailable": 1}}
    body = {"metadata": {"name": "a"}, "spec": {
        "selector": {"matchLabels": {"fleet": "a"}}, "rolloutPolicy": policy,
        "template": {"spec": {"os": {"image": "quay.io/org/os:1"}}}}}
    assert api.post("/api/v1/fleets", body, format="json").status_code == 201
    create_rs(api)
    run()
    adopted = fleets(api)["a"]
    assert adopted["metadata"]["owner"] == "ResourceSync/rs"
    assert adopted["spec"]["rolloutPolicy"] == policy


def test_a_missing_repository_or_revision_is_reported_as_inaccessible(api, gitops):
    response = api.post(RS, {"metadata": {"name": "rs"}, "spec": {
        "repository": "nope", "targetRevision": "main", "path": "/"}}, format="json")
    assert response.status_code == 201
    run()
    assert conditions(api)["Accessible"] == ("False", 'repository resource "nope" not found')
    response = api.put(f"{RS}/rs", {"metadata": {"name": "rs"}, "spec": {
        "repository": "git", "targetRevision": "no-such-branch", "path": "/"}}, format="json")
    assert response.status_code == 200
    run()
    accessible = conditions(api)["Accessible"]
    assert accessible[0] == "False" and "failed to clone repository" in accessible[1]
    # spec.type is immutable.
    response = api.put(f"{RS}/rs", {"metadata": {"name": "rs"}, "spec": {
        "repository": "git", "targetRevision": "main", "path": "/", "type": "catalog"}},
        format="json")
    assert response.status_code == 400
