"""Queries compiled once (flightctl.compiled): the same rows as the ORM, fresh values each run."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ORG = "00000000-0000-0000-0000-000000000000"


def test_a_compiled_lookup_returns_what_the_orm_returns_for_every_call(api):
    from devices.health import with_fleet_template_version
    from devices.models import Device
    from flightctl.compiled import CompiledLookup

    for name in ("a", "b"):
        assert api.put(f"/api/v1/devices/{name}", {"metadata": {"name": name, "labels": {
            "site": name}}}, format="json").status_code == 201
    lookup = CompiledLookup(lambda org, name: with_fleet_template_version(
        Device.objects.restrict(org).filter(name=name)).defer("rendered_spec"))

    for name in ("a", "b", "a"):
        device = lookup.first(ORG, name)
        assert device.name == name and device.labels == {"site": name}
        assert device.fleet_template_version is None  # the annotation, as an attribute
        assert "rendered_spec" in device.get_deferred_fields()
    assert lookup.first(ORG, "missing") is None
    assert lookup.first("11111111-1111-1111-1111-111111111111", "a") is None  # other org
