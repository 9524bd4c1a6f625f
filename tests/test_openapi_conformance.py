"""Responses validate against the reference's v1beta1 OpenAPI schemas (read in place)."""

from __future__ import annotations

import functools

import pytest
import yaml
from openapi_schema_validator import OAS30ReadValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.conftest import REFERENCE, load_example
from tests.test_fleet_api import fleet

pytestmark = pytest.mark.django_db
DOC_URI = "urn:flightctl-core-v1beta1"


@functools.cache
def _registry():
    document = yaml.safe_load(
        (REFERENCE / "flightctl-api" / "core-v1beta1.openapi.yaml").read_text()
    )
    return document, Registry().with_resource(DOC_URI, Resource(document, specification=DRAFT4))


def assert_valid(body: dict, schema_name: str) -> None:
    document, registry = _registry()
    schema = {"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"}
    validator = OAS30ReadValidator(schema, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


@pytest.fixture
def populated(api):
    for example in ("device.yaml", "device-b.yaml", "device-container-app.yaml"):
        manifest = load_example(example)
        assert api.put(f"/api/v1/devices/{manifest['metadata']['name']}", manifest,
                       format="json").status_code == 201
    for example in ("fleet.yaml", "fleet-b.yaml"):
        manifest = load_example(example)
        api.put(f"/api/v1/fleets/{manifest['metadata']['name']}", manifest, format="json")
    api.post("/api/v1/fleets", fleet("f-policy", policy={
        "disruptionBudget": {"maxUnavailable": 1}}), format="json")
    return api


def test_device_and_device_list_match_the_reference_schemas(populated):
    listing = populated.get("/api/v1/devices", {"limit": 2}).json()
    assert_valid(listing, "DeviceList")
    for item in listing["items"]:
        assert_valid(populated.get(f"/api/v1/devices/{item['metadata']['name']}").json(),
                     "Device")
    assert_valid(populated.get("/api/v1/devices", {"summaryOnly": "true"}).json(), "DeviceList")


def test_fleet_and_fleet_list_match_the_reference_schemas(populated):
    listing = populated.get("/api/v1/fleets").json()
    assert len(listing["items"]) == 3
    assert_valid(listing, "FleetList")
    assert_valid(populated.get("/api/v1/fleets/default").json(), "Fleet")


def test_events_match_the_reference_schema(populated):
    events = populated.get("/api/v1/events").json()
    assert events["items"]
    assert_valid(events, "EventList")


def test_errors_and_delete_results_match_the_status_schema(populated):
    assert_valid(populated.get("/api/v1/devices/nope").json(), "Status")
    assert_valid(populated.post("/api/v1/devices", {"metadata": {"name": "Bad"}},
                                format="json").json(), "Status")
    assert_valid(populated.delete("/api/v1/fleets/default").json(), "Status")
