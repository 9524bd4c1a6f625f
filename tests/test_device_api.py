"""Device CRUD through the user API on a real PostgreSQL: the reference's write semantics."""

from __future__ import annotations

import pytest

from tests.conftest import load_example, patch

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"


def device(name="dev1", labels=None, spec=None, **meta):
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "labels": labels or {}, **meta}}
    if spec is not None:
        body["spec"] = spec
    return body


def inline_spec(path="/etc/motd", content="hello"):
    return {"config": [{"name": "motd", "inline": [{"path": path, "content": content}]}]}


def test_a_created_device_has_server_managed_metadata_and_a_complete_status(api):
    r = api.post(DEV, device(labels={"site": "berlin"}), format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["apiVersion"] == "flightctl.io/v1beta1" and body["kind"] == "Device"
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["resourceVersion"] == "1"
    assert body["metadata"]["labels"] == {"site": "berlin"}
    assert body["metadata"]["creationTimestamp"].endswith("Z")
    for key in ("summary", "updated", "applicationsSummary", "lifecycle", "integrity", "config"):
        assert key in body["status"]
    assert "lastSeen" not in body["status"]


def test_client_sent_managed_fields_are_ignored(api):
    body = device(owner="Fleet/evil", generation=7, annotations={"a": "b"},
                  creationTimestamp="2000-01-01T00:00:00Z")
    body["status"] = {"summary": {"status": "Online"}}
    created = api.post(DEV, body, format="json").json()
    assert "owner" not in created["metadata"]
    assert created["metadata"]["generation"] == 1
    assert "annotations" not in created["metadata"]
    assert not created["metadata"]["creationTimestamp"].startswith("2000")
    assert created["status"]["summary"]["status"] == "Unknown"


def test_creating_a_duplicate_name_is_a_conflict(api):
    assert api.post(DEV, device(), format="json").status_code == 201
    r = api.post(DEV, device(), format="json")
    assert r.status_code == 409
    assert r.json()["message"] == "a resource with this name already exists"
    assert r.json()["kind"] == "Status" and r.json()["reason"] == "Conflict"


def test_get_of_a_missing_device_says_device_of_name_not_found(api):
    r = api.get(f"{DEV}/nope")
    assert r.status_code == 404
    assert r.json() == {"apiVersion": "flightctl.io/v1beta1", "kind": "Status",
                        "status": "Failure", "code": 404, "reason": "Not Found",
                        "message": 'Device of name "nope" not found'}


def test_put_creates_then_replaces_and_generation_follows_spec_changes_only(api):
    r = api.put(f"{DEV}/dev1", device(), format="json")
    assert r.status_code == 201
    r = api.put(f"{DEV}/dev1", device(labels={"a": "b"}), format="json")
    assert r.status_code == 200
    assert r.json()["metadata"]["generation"] == 1
    assert r.json()["metadata"]["resourceVersion"] == "2"
    r = api.put(f"{DEV}/dev1", device(labels={"a": "b"}, spec=inline_spec()), format="json")
    assert r.json()["metadata"]["generation"] == 2
    assert r.json()["metadata"]["resourceVersion"] == "3"
    # An identical PUT changes nothing, not even the resourceVersion.
    r = api.put(f"{DEV}/dev1", device(labels={"a": "b"}, spec=inline_spec()), format="json")
    assert r.json()["metadata"]["resourceVersion"] == "3"


def test_put_without_labels_keeps_the_stored_labels(api):
    api.put(f"{DEV}/dev1", device(labels={"keep": "me"}), format="json")
    body = device()
    del body["metadata"]["labels"]
    r = api.put(f"{DEV}/dev1", body, format="json")
    assert r.json()["metadata"]["labels"] == {"keep": "me"}


def test_put_with_another_name_in_metadata_is_refused(api):
    r = api.put(f"{DEV}/dev1", device(name="dev2"), format="json")
    assert r.status_code == 400
    assert r.json()["message"] == "resource name specified in metadata does not match name in path"


def test_a_stale_resource_version_is_a_conflict(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    api.put(f"{DEV}/dev1", device(labels={"x": "1"}), format="json")
    r = api.put(f"{DEV}/dev1", device(labels={"x": "2"}, resourceVersion="1"), format="json")
    assert r.status_code == 409
    assert r.json()["message"].startswith("the object has been modified")
    r = api.put(f"{DEV}/dev1", device(labels={"x": "2"}, resourceVersion="2"), format="json")
    assert r.status_code == 200


def test_a_non_numeric_resource_version_is_a_bad_request(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    r = api.put(f"{DEV}/dev1", device(resourceVersion="abc"), format="json")
    assert r.status_code == 400


def test_json_patch_changes_labels_and_spec_and_is_revalidated(api):
    api.put(f"{DEV}/dev1", device(labels={"a": "1"}), format="json")
    r = patch(api, f"{DEV}/dev1", [
        {"op": "replace", "path": "/metadata/labels", "value": {"site": "berlin"}},
        {"op": "add", "path": "/spec/os", "value": {"image": "quay.io/org/os:9.5"}},
    ])
    assert r.status_code == 200, r.json()
    assert r.json()["metadata"]["labels"] == {"site": "berlin"}
    assert r.json()["spec"]["os"]["image"] == "quay.io/org/os:9.5"
    assert r.json()["metadata"]["generation"] == 2
    r = patch(api, f"{DEV}/dev1", [{"op": "add", "path": "/spec/config",
                                    "value": inline_spec("relative/path")["config"]}])
    assert r.status_code == 400
    assert "must be an absolute path" in r.json()["message"]


def test_json_patch_cannot_touch_immutable_parts(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    for op in (
        {"op": "replace", "path": "/metadata/name", "value": "other"},
        {"op": "replace", "path": "/kind", "value": "Fleet"},
        {"op": "replace", "path": "/status/summary/status", "value": "Online"},
    ):
        r = patch(api, f"{DEV}/dev1", [op])
        assert r.status_code == 400, op
        assert "immutable" in r.json()["message"]


def test_json_patch_failures_are_bad_requests(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    assert patch(api, f"{DEV}/dev1", [{"op": "test", "path": "/metadata/name",
                                       "value": "x"}]).status_code == 400
    assert patch(api, f"{DEV}/dev1", [{"op": "move", "from": "/a", "path": "/b"}]
                 ).status_code == 400
    assert patch(api, f"{DEV}/dev1", {"op": "add"}).status_code == 400
    assert patch(api, f"{DEV}/missing", [{"op": "add", "path": "/metadata/labels/a",
                                          "value": "b"}]).status_code == 404


def test_patch_with_plain_json_content_type_is_unsupported_media_type(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    r = api.generic("PATCH", f"{DEV}/dev1", "[]", content_type="text/plain")
    assert r.status_code == 415
    assert r.json()["kind"] == "Status"


def test_delete_is_idempotent_and_recorded_as_an_event(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    for _ in range(2):
        r = api.delete(f"{DEV}/dev1")
        assert r.status_code == 200
        assert r.json()["status"] == "Success" and r.json()["code"] == 200
    events = api.get("/api/v1/events", {"fieldSelector": "involvedObject.name=dev1"}).json()
    reasons = [e["reason"] for e in events["items"]]
    assert reasons == ["ResourceDeleted", "ResourceCreated"]
    assert all(e["actor"] == "user:admin" for e in events["items"])


def test_updates_record_which_fields_changed(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    api.put(f"{DEV}/dev1", device(labels={"a": "b"}, spec=inline_spec()), format="json")
    events = api.get("/api/v1/events", {"fieldSelector": "reason=ResourceUpdated"}).json()
    assert events["items"][0]["details"] == {"detailType": "ResourceUpdated",
                                             "updatedFields": ["labels", "spec"]}


@pytest.mark.parametrize("name", ["Bad_Name", "-lead", "trail-", "a" * 254, "UPPER"])
def test_bad_names_are_refused_with_the_kubernetes_message(api, name):
    r = api.post(DEV, device(name=name), format="json")
    assert r.status_code == 400
    assert r.json()["message"].startswith("metadata.name: Invalid value")


@pytest.mark.parametrize("labels", [{"bad key!": "v"}, {"k": "bad value!"}, {"k": "x" * 64},
                                    {"/k": "v"}, {"a/b/c": "v"}])
def test_bad_labels_are_refused(api, labels):
    r = api.post(DEV, device(labels=labels), format="json")
    assert r.status_code == 400
    assert "metadata.labels" in r.json()["message"]
    assert "Invalid value" in r.json()["message"]


@pytest.mark.parametrize("path,fragment", [
    ("etc/motd", "must be an absolute path"),
    ("/var/lib/flightctl/x", "forbidden device path"),
    ("/etc/flightctl/config.yaml", "writing agent config file is not allowed"),
    ("/etc/flightctl/certs/agent.crt", "forbidden device path"),
    ("/a:b", "forbidden device path"),
])
def test_bad_file_paths_are_refused(api, path, fragment):
    r = api.post(DEV, device(spec=inline_spec(path)), format="json")
    assert r.status_code == 400
    assert fragment in r.json()["message"]


def test_duplicate_application_names_are_refused(api):
    app = {"name": "web", "appType": "container", "image": "quay.io/org/web:1"}
    r = api.post(DEV, device(spec={"applications": [app, dict(app)]}), format="json")
    assert r.status_code == 400
    assert "must be unique" in r.json()["message"] or "Duplicate" in r.json()["message"]


def test_every_problem_is_reported_at_once(api):
    spec = {"config": [{"name": "a", "inline": [{"path": "rel", "content": "x"},
                                                 {"path": "/ok", "content": "x", "mode": 99999}]}]}
    r = api.post(DEV, device(name="Bad", spec=spec), format="json")
    lines = r.json()["message"].splitlines()
    assert len(lines) >= 3


def test_a_device_cannot_be_created_decommissioning_or_with_consoles(api):
    r = api.post(DEV, device(spec={"decommissioning": {"target": "Unenroll"}}), format="json")
    assert r.status_code == 400
    r = api.post(DEV, device(spec={"consoles": [{"sessionID": "x", "sessionMetadata": "{}"}]}),
                 format="json")
    assert r.status_code == 400
    assert r.json()["message"] == "consoles are not supported through this api"


def test_a_decommissioned_device_cannot_be_updated(api):
    from devices.models import Device

    api.put(f"{DEV}/dev1", device(), format="json")
    Device.objects.filter(name="dev1").update(spec={"decommissioning": {"target": "Unenroll"}})
    r = api.put(f"{DEV}/dev1", device(labels={"a": "b"}), format="json")
    assert r.status_code == 409
    assert r.json()["message"] == "decommissioned device cannot be created or updated"


def test_a_fleet_owned_device_may_change_labels_but_not_spec(api):
    from devices.models import Device

    api.put(f"{DEV}/dev1", device(), format="json")
    Device.objects.filter(name="dev1").update(owner="Fleet/f1")
    assert api.put(f"{DEV}/dev1", device(labels={"a": "b"}), format="json").status_code == 200
    r = api.put(f"{DEV}/dev1", device(spec=inline_spec()), format="json")
    assert r.status_code == 409
    assert r.json()["message"] == "updating the resource is not allowed because it has an owner"
    assert api.get(f"{DEV}/dev1").json()["metadata"]["owner"] == "Fleet/f1"


def test_last_seen_is_204_for_a_device_never_seen(api):
    api.put(f"{DEV}/dev1", device(), format="json")
    assert api.get(f"{DEV}/dev1/lastseen").status_code == 204
    assert api.get(f"{DEV}/missing/lastseen").status_code == 404


def test_status_subresource_replaces_only_status(api):
    api.put(f"{DEV}/dev1", device(labels={"a": "b"}), format="json")
    body = device(labels={"changed": "no"})
    body["status"] = {"summary": {"status": "Online", "info": "ok"},
                      "systemInfo": {"architecture": "amd64", "bootID": "b",
                                     "operatingSystem": "linux", "agentVersion": "1"}}
    r = api.put(f"{DEV}/dev1/status", body, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["metadata"]["labels"] == {"a": "b"}
    assert r.json()["status"]["systemInfo"]["architecture"] == "amd64"
    assert r.json()["metadata"]["generation"] == 1


@pytest.mark.parametrize("example", ["device.yaml", "device-b.yaml", "device-standalone.yaml",
                                     "device-container-app.yaml", "device-quadlet-app.yaml"])
def test_reference_device_examples_are_accepted_unchanged_by_put(api, example):
    manifest = load_example(example)
    r = api.put(f"{DEV}/{manifest['metadata']['name']}", manifest, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["spec"] == manifest.get("spec", {})
