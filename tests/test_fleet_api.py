"""Fleet CRUD and validation through the user API."""

from __future__ import annotations

import pytest

from tests.conftest import load_example, patch

pytestmark = pytest.mark.django_db

FLEETS = "/api/v1/fleets"


def fleet(name="f1", selector=None, template_spec=None, policy=None, labels=None):
    spec = {"selector": selector or {"matchLabels": {"fleet": name}},
            "template": {"metadata": {"labels": {"fleet": name}},
                         "spec": template_spec if template_spec is not None else {
                             "os": {"image": "quay.io/org/os:1"}}}}
    if policy is not None:
        spec["rolloutPolicy"] = policy
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet",
            "metadata": {"name": name, "labels": labels or {}}, "spec": spec}


def test_fleet_lifecycle_create_get_list_replace_patch_delete(api):
    r = api.post(FLEETS, fleet(), format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["status"]["conditions"] == []
    assert api.get(f"{FLEETS}/f1").json()["spec"]["selector"] == {"matchLabels": {"fleet": "f1"}}
    listing = api.get(FLEETS).json()
    assert listing["kind"] == "FleetList" and [i["metadata"]["name"] for i in listing["items"]] == [
        "f1"]
    r = api.put(f"{FLEETS}/f1", fleet(template_spec={"os": {"image": "quay.io/org/os:2"}}),
                format="json")
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 2
    r = patch(api, f"{FLEETS}/f1", [{"op": "replace", "path": "/spec/template/spec/os/image",
                                      "value": "quay.io/org/os:3"}])
    assert r.status_code == 200 and r.json()["metadata"]["generation"] == 3
    assert api.delete(f"{FLEETS}/f1").status_code == 200
    assert api.get(f"{FLEETS}/f1").status_code == 404


def test_a_fleet_without_a_template_is_refused(api):
    body = fleet()
    del body["spec"]["template"]
    r = api.post(FLEETS, body, format="json")
    assert r.status_code == 400
    assert "spec.template" in r.json()["message"]


def test_a_fleet_without_spec_is_refused(api):
    body = fleet()
    del body["spec"]
    assert api.post(FLEETS, body, format="json").status_code == 400


@pytest.mark.parametrize("policy", [
    {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": "150%"}]}},
    {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": "abc"}]}},
    {"successThreshold": "101%", "disruptionBudget": {"maxUnavailable": 1}},
    {"disruptionBudget": {"groupBy": ["site"]}},
    {"disruptionBudget": {"maxUnavailable": 0}},
    {"deviceSelection": {"strategy": "BatchSequence", "sequence": [{"limit": 0}]}},
    {"defaultUpdateTimeout": "ten minutes", "disruptionBudget": {"maxUnavailable": 1}},
])
def test_bad_rollout_policies_are_refused(api, policy):
    r = api.post(FLEETS, fleet(policy=policy), format="json")
    assert r.status_code == 400, policy
    assert "spec.rolloutPolicy" in r.json()["message"]


def test_a_good_rollout_policy_is_accepted(api):
    policy = {"deviceSelection": {"strategy": "BatchSequence", "sequence": [
        {"selector": {"matchLabels": {"stage": "canary"}}, "limit": 1},
        {"limit": "50%", "successThreshold": "90%"}]},
        "successThreshold": "95%", "disruptionBudget": {"groupBy": ["site"], "maxUnavailable": 1},
        "defaultUpdateTimeout": "24h"}
    assert api.post(FLEETS, fleet(policy=policy), format="json").status_code == 201


def test_template_placeholders_are_validated(api):
    good = {"os": {"image": "quay.io/org/os:{{ getOrDefault .metadata.labels \"tag\" \"v1\" }}"}}
    assert api.post(FLEETS, fleet("ok", template_spec=good), format="json").status_code == 201
    bad = {"os": {"image": "quay.io/org/os:{{ .metadata.annotations.x }}"}}
    r = api.post(FLEETS, fleet("bad", template_spec=bad), format="json")
    assert r.status_code == 400
    assert "unsupported field" in r.json()["message"]


def test_a_bad_selector_expression_is_refused(api):
    selector = {"matchExpressions": [{"key": "site", "operator": "Near", "values": ["x"]}]}
    assert api.post(FLEETS, fleet(selector=selector), format="json").status_code == 400


def test_a_fleet_owned_by_a_resource_sync_cannot_be_edited_or_deleted(api):
    from fleets.models import Fleet

    api.post(FLEETS, fleet(), format="json")
    Fleet.objects.filter(name="f1").update(owner="ResourceSync/rs1")
    r = api.put(f"{FLEETS}/f1", fleet(template_spec={"os": {"image": "x.io/y:2"}}), format="json")
    assert r.status_code == 409
    r = api.put(f"{FLEETS}/f1", fleet(labels={"new": "label"}), format="json")
    assert r.status_code == 409
    r = api.delete(f"{FLEETS}/f1")
    assert r.status_code == 409
    assert r.json()["message"] == "deleting the resource is not allowed because it has an owner"


def test_fleet_update_events_say_whether_selector_or_template_changed(api):
    api.post(FLEETS, fleet(), format="json")
    api.put(f"{FLEETS}/f1", fleet(selector={"matchLabels": {"x": "y"}}), format="json")
    api.put(f"{FLEETS}/f1", fleet(selector={"matchLabels": {"x": "y"}},
                                  template_spec={"os": {"image": "q.io/a:2"}}), format="json")
    events = api.get("/api/v1/events", {"fieldSelector": "involvedObject.kind=Fleet,"
                                                         "reason=ResourceUpdated"}).json()
    fields = [e["details"]["updatedFields"] for e in events["items"]]
    assert fields == [["spec.template"], ["spec.selector"]]


def test_fleets_are_selectable_by_template_os_image(api):
    api.post(FLEETS, fleet("a", template_spec={"os": {"image": "q.io/os:1"}}), format="json")
    api.post(FLEETS, fleet("b", template_spec={"os": {"image": "q.io/os:2"}}), format="json")
    r = api.get(FLEETS, {"fieldSelector": "spec.template.spec.os.image=q.io/os:2"})
    assert [i["metadata"]["name"] for i in r.json()["items"]] == ["b"]


@pytest.mark.parametrize("example", ["fleet.yaml", "fleet-b.yaml", "fleet-disk-simulator.yaml"])
def test_reference_fleet_examples_are_accepted_unchanged_by_put(api, example):
    manifest = load_example(example)
    r = api.put(f"{FLEETS}/{manifest['metadata']['name']}", manifest, format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["spec"] == manifest["spec"]
