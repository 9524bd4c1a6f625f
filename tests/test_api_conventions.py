"""What every endpoint shares: Status errors, authentication, version negotiation, headers."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_requests_without_a_token_get_401_as_a_status(anon):
    r = anon.get("/api/v1/devices")
    assert r.status_code == 401
    assert r.json()["kind"] == "Status" and r.json()["reason"] == "Unauthorized"
    assert r["WWW-Authenticate"] == "Bearer"


def test_a_wrong_token_gets_401(anon):
    anon.credentials(HTTP_AUTHORIZATION="Bearer nope")
    r = anon.get("/api/v1/devices")
    assert r.status_code == 401 and r.json()["message"] == "invalid token"


def test_an_expired_token_gets_401(admin_user, anon):
    import datetime

    from django.utils import timezone

    from flightctl.models import ApiToken

    token = ApiToken.issue(admin_user, expires_at=timezone.now() - datetime.timedelta(seconds=1))
    anon.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert anon.get("/api/v1/devices").json()["message"] == "token has expired"


def test_public_endpoints_need_no_token(anon):
    assert anon.get("/api/v1/auth/config").status_code == 200
    assert anon.get("/healthz").status_code == 200
    assert anon.get("/readyz").json() == {"status": "ok"}
    doc = anon.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/devices" in doc["paths"]
    assert anon.get("/metrics").status_code == 200


def test_an_unknown_api_version_is_406_with_the_supported_list(api):
    r = api.get("/api/v1/devices", HTTP_FLIGHTCTL_API_VERSION="v9")
    assert r.status_code == 406
    assert r["Flightctl-API-Versions-Supported"] == "v1beta1"
    assert r.json() == {"code": 406, "message": "Requested API version is not supported for "
                        "this endpoint. Supported versions: v1beta1"}


def test_the_negotiated_version_and_security_headers_are_always_sent(api):
    r = api.get("/api/v1/devices", HTTP_FLIGHTCTL_API_VERSION="v1beta1")
    assert r.status_code == 200
    assert r["Flightctl-API-Version"] == "v1beta1"
    assert r["Vary"] == "Flightctl-API-Version"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert r["Strict-Transport-Security"].startswith("max-age=")


def test_unknown_paths_and_methods_answer_with_a_status(api):
    r = api.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.json()["kind"] == "Status"
    r = api.post("/api/v1/devices/dev1", {}, format="json")
    assert r.status_code == 405 and r.json()["kind"] == "Status"


def test_malformed_json_is_a_bad_request(api):
    r = api.generic("POST", "/api/v1/devices", "{not json", content_type="application/json")
    assert r.status_code == 400
    assert r.json()["message"].startswith("API Error:")


def test_a_body_that_is_not_an_object_is_a_bad_request(api):
    r = api.post("/api/v1/devices", [1, 2], format="json")
    assert r.status_code == 400


def test_version_and_auth_helpers(api):
    assert api.get("/api/v1/version").json()["version"]
    assert api.get("/api/v1/auth/validate").status_code == 200
    assert api.get("/api/v1/auth/userinfo").json()["preferred_username"] == "admin"
    orgs = api.get("/api/v1/organizations").json()
    assert orgs["items"][0]["metadata"]["name"] == "00000000-0000-0000-0000-000000000000"


def test_org_id_must_be_a_known_uuid(api):
    assert api.get("/api/v1/devices", {"org_id": "nope"}).status_code == 400
    r = api.get("/api/v1/devices", {"org_id": "11111111-1111-1111-1111-111111111111"})
    assert r.status_code == 403
    r = api.get("/api/v1/devices", {"org_id": "00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 200


def test_resources_of_another_organization_are_invisible(api):
    import uuid

    from devices.models import Device
    from flightctl.models import Organization

    other = Organization.objects.create(id=uuid.uuid4(), display_name="other")
    Device.objects.create(org_id=other.id, name="theirs")
    assert api.get("/api/v1/devices/theirs").status_code == 404
    assert api.get("/api/v1/devices").json()["items"] == []
    assert api.get("/api/v1/devices/theirs", {"org_id": str(other.id)}).status_code == 200


def test_the_admin_lists_devices_with_label_and_status_filters(admin_user, client):
    from devices.models import Device

    Device.objects.create(name="dev1", labels={"site": "berlin"},
                          status={"summary": {"status": "Online"}})
    admin_user.set_password("pw")
    admin_user.save()
    client.force_login(admin_user)
    page = client.get("/admin/devices/device/", {"label": "site=berlin", "summary": "Online"})
    assert page.status_code == 200
    assert b"dev1" in page.content and b"site=berlin" in page.content
    assert client.get("/admin/fleets/fleet/").status_code == 200
    assert client.get("/admin/flightctl/event/").status_code == 200
