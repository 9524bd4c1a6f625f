"""Bad input gets a clear 400 (413 for a body too large) with a ``Status`` body on both APIs,
never a 500: NUL characters anywhere, JSON nested a thousand levels deep, an oversized body,
a JSON Patch whose ``op`` is not a string, an object where a string belongs."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.test_agent_api import agent_server, enroll  # noqa: F401 - fixture

NESTED = "[" * 1000 + "]" * 1000
DEVICE = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device", "metadata": {"name": "d1"}}


def assert_status(response, code: int = 400):
    assert response.status_code == code, response.content[:300]
    body = response.json()
    assert body["kind"] == "Status" and body["code"] == code, body
    return body["message"]


def send(api, method: str, path: str, raw: str | bytes, content_type="application/json"):
    return api.generic(method, path, raw, content_type=content_type)


def device(**spec) -> dict:
    return {**DEVICE, "spec": spec}


def inline(path="/etc/motd", content="hi") -> dict:
    return {"config": [{"name": "c", "inline": [{"path": path, "content": content}]}]}


BAD_DOCUMENTS = {
    "name": {**DEVICE, "metadata": {"name": "d\u00001"}},
    "label value": {**DEVICE, "metadata": {"name": "d1", "labels": {"a": "b\u0000"}}},
    "label key": {**DEVICE, "metadata": {"name": "d1", "labels": {"a\u0000": "b"}}},
    "annotation": {**DEVICE, "metadata": {"name": "d1", "annotations": {"x": "\u0000"}}},
    "image": device(os={"image": "quay.io/o/i:\u0000"}),
    "file path": device(**inline(path="/etc/mo\u0000td")),
    "file content": device(**inline(content="a\u0000b")),
    "unknown field": device(nope={"x": "\u0000"}),
}


@pytest.mark.django_db
@pytest.mark.parametrize("what", BAD_DOCUMENTS)
def test_a_nul_in_a_document_is_a_400(api, what):
    document = BAD_DOCUMENTS[what]
    name = document["metadata"]["name"] if what != "name" else "d1"
    message = assert_status(api.put(f"/api/v1/devices/{name}", document, format="json"))
    assert "NUL" in message or "Invalid value" in message
    assert assert_status(api.post("/api/v1/devices", document, format="json"))


@pytest.mark.django_db
@pytest.mark.parametrize("url", [
    "/api/v1/devices/d%001",
    "/api/v1/devices?labelSelector=a%3Db%00",
    "/api/v1/devices?fieldSelector=metadata.name%3Dd%001",
    "/api/v1/devices?fieldSelector=status.summary.status%3D%00",
    "/api/v1/fleets?labelSelector=a%00",
    "/api/v1/events?fieldSelector=involvedObject.name%3D%00",
    "/api/v1/devices?continue=%00",
    "/api/v1/labels?kind=Device&labelSelector=%00",
])
def test_a_nul_in_the_path_or_a_query_parameter_is_a_400(api, url):
    assert "NUL" in assert_status(api.get(url))


@pytest.mark.django_db
def test_a_nul_in_a_status_is_a_400(api):
    assert api.put("/api/v1/devices/d1", DEVICE, format="json").status_code == 201
    body = {**DEVICE, "status": {"summary": {"status": "Online", "info": "\u0000"}}}
    assert_status(api.put("/api/v1/devices/d1/status", body, format="json"))
    # ... and the device can still be written afterwards.
    assert api.get("/api/v1/devices/d1").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("method,path,content_type", [
    ("POST", "/api/v1/devices", "application/json"),
    ("PUT", "/api/v1/fleets/f", "application/json"),
    ("PATCH", "/api/v1/devices/d1", "application/json-patch+json"),
    ("POST", "/api/v1/repositories", "application/json"),
])
def test_json_nested_a_thousand_levels_deep_is_a_400(api, method, path, content_type):
    assert api.put("/api/v1/devices/d1", DEVICE, format="json").status_code == 201
    assert "nested" in assert_status(send(api, method, path, NESTED, content_type))
    deep_object = '{"a":' * 1000 + "1" + "}" * 1000
    assert "nested" in assert_status(send(api, method, path, deep_object, content_type))


@pytest.mark.django_db
def test_a_body_over_the_limit_is_a_413_on_the_user_api(api, settings):
    big = json.dumps({**DEVICE, "metadata": {"name": "d1", "labels": {"x": "y" * (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)}}})
    message = assert_status(send(api, "PUT", "/api/v1/devices/d1", big), 413)
    assert "too large" in message
    # Without a Content-Length the parser still stops at the limit.
    from flightctl.api.parsers import JSONParser

    class Stream:
        def __init__(self, data):
            self.data = data

        def read(self, size=-1):
            return self.data if size < 0 else self.data[:size]

    from flightctl.api.errors import ApiError

    with pytest.raises(ApiError) as refused:
        JSONParser().parse(Stream(big.encode()))
    assert refused.value.status_code == 413


@pytest.mark.django_db
@pytest.mark.parametrize("op", [{}, [], 1, None, True])
def test_a_json_patch_whose_op_is_not_a_string_is_a_400(api, op):
    assert api.put("/api/v1/devices/d1", DEVICE, format="json").status_code == 201
    patch = json.dumps([{"op": op, "path": "/metadata/labels", "value": {}}])
    for path in ("/api/v1/devices/d1", "/api/v1/devices/d1/status"):
        assert "unsupported patch operation" in assert_status(
            send(api, "PATCH", path, patch, "application/json-patch+json"))
    bad_path = json.dumps([{"op": "add", "path": {}, "value": 1}])
    assert_status(send(api, "PATCH", "/api/v1/devices/d1", bad_path,
                       "application/json-patch+json"))


OBJECT = {"an": "object"}


@pytest.mark.django_db
@pytest.mark.parametrize("spec", [
    {"type": OBJECT},
    {"type": "git", "url": OBJECT},
    {"type": "http", "url": "https://x.example.com/", "validationSuffix": OBJECT},
    {"type": "git", "url": "https://x.example.com/", "httpConfig": {"username": OBJECT,
                                                                    "password": "p"}},
    {"type": "git", "url": "https://x.example.com/", "httpConfig": {"token": OBJECT}},
    {"type": "git", "url": "https://x.example.com/", "sshConfig": {"sshPrivateKey": OBJECT}},
    {"type": "oci", "registry": OBJECT},
    {"type": "oci", "registry": "r.example.com", "scheme": OBJECT},
    {"type": "oci", "registry": "r.example.com", "accessMode": OBJECT},
    {"type": "oci", "registry": "r.example.com", "ociAuth": {"authType": OBJECT}},
    {"type": "oci", "registry": "r.example.com", "ociAuth": {
        "authType": "docker", "username": "u", "password": OBJECT}},
    {"type": "oci", "registry": "r.example.com", "baseImages": [{"imageName": OBJECT,
                                                                 "tags": ["1"]}]},
    {"type": "oci", "registry": "r.example.com", "baseImages": [{"imageName": "i",
                                                                 "tags": [OBJECT]}]},
    {"type": "oci", "registry": "r.example.com", "ca.crt": OBJECT},
])
def test_a_repository_spec_with_an_object_where_a_string_belongs_is_a_400(api, spec):
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Repository",
            "metadata": {"name": "r"}, "spec": spec}
    assert_status(api.post("/api/v1/repositories", body, format="json"))
    assert_status(api.put("/api/v1/repositories/r", body, format="json"))


@pytest.mark.django_db
def test_limit_zero_means_the_default_page_as_in_the_reference(api):
    for i in range(3):
        api.put(f"/api/v1/devices/d{i}", {**DEVICE, "metadata": {"name": f"d{i}"}},
                format="json")
    listing = api.get("/api/v1/devices?limit=0")
    assert listing.status_code == 200 and len(listing.json()["items"]) == 3
    assert_status(api.get("/api/v1/devices?limit=-1"))
    assert_status(api.get("/api/v1/devices?limit=1001"))


def test_the_docs_say_what_limit_accepts():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    assert "`limit` is 0..1000" in text


@pytest.mark.django_db
def test_an_unauthenticated_client_gets_a_status_for_bad_input_too(db):
    client = Client()
    assert_status(client.get("/api/v1/devices/d%001"))
    assert_status(client.generic("PUT", "/api/v1/devices/d1", NESTED,
                                 content_type="application/json"), 401)


# -- the agent API ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_agent_api_refuses_the_same_input_with_a_400(agent_server, api, tmp_path):  # noqa: F811
    client, name, _ = enroll(api, agent_server, tmp_path)
    status_path = f"/api/v1/devices/{name}/status"
    headers = {"Content-Type": "application/json"}
    status = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
              "metadata": {"name": name},
              "status": {"summary": {"status": "Online", "info": "broken\u0000"}}}
    assert "NUL" in assert_status(client.put(status_path, status))
    assert "nested" in assert_status(client.request("PUT", status_path, data=NESTED,
                                                    headers=headers))
    assert "NUL" in assert_status(client.get(f"/api/v1/devices/{name}%00/rendered"))
    assert "NUL" in assert_status(client.get(f"/api/v1/devices/{name}/rendered?knownRenderedV"
                                             "ersion=%00"))
    csr = client.request("POST", "/api/v1/certificatesigningrequests", data=NESTED,
                         headers=headers)
    assert "nested" in assert_status(csr)
    # The device can still report: its status was never half-written.
    fine = dict(status, status={"summary": {"status": "Online", "info": "ok"}})
    assert client.put(status_path, fine).status_code == 200


# -- found by the fuzzer (tests/test_api_fuzz.py) ----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("value", [None, True, "x", [], 1])
def test_a_json_patch_that_replaces_the_whole_document_with_a_non_object_is_a_400(api, value):
    assert api.put("/api/v1/devices/d1", DEVICE, format="json").status_code == 201
    patch = json.dumps([{"op": "replace", "path": "", "value": value}])
    for path in ("/api/v1/devices/d1", "/api/v1/devices/d1/status"):
        assert "must be an object" in assert_status(
            send(api, "PATCH", path, patch, "application/json-patch+json"))


@pytest.mark.django_db
@pytest.mark.parametrize("kind,plural", [("Device", "devices"), ("Fleet", "fleets")])
@pytest.mark.parametrize("status", [[], "x", 1, True])
def test_a_status_that_is_not_an_object_is_a_400(api, kind, plural, status):
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": kind, "metadata": {"name": "s1"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {}}}
            if kind == "Fleet" else {}}
    assert api.put(f"/api/v1/{plural}/s1", body, format="json").status_code == 201
    message = assert_status(api.put(f"/api/v1/{plural}/s1/status", {**body, "status": status},
                                    format="json"))
    assert "status" in message
