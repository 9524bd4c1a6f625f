"""Roles through the user API: admin, operator, viewer, installer (api.md §0.7)."""

from __future__ import annotations

import subprocess

import pytest
from rest_framework.test import APIClient

from tests.test_device_api import device

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"


def client_for(username: str, role: str) -> APIClient:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from flightctl.models import ApiToken

    user = get_user_model().objects.create_user(username)
    if role:
        user.groups.add(Group.objects.get_or_create(name=f"flightctl-{role}")[0])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)}")
    return client


def test_a_viewer_reads_everything_and_changes_nothing(api):
    assert api.post(DEV, device("d1"), format="json").status_code == 201
    viewer = client_for("vera", "viewer")
    assert viewer.get(DEV).status_code == 200
    assert viewer.get(f"{DEV}/d1").status_code == 200
    assert viewer.get(f"{DEV}/d1/status").status_code == 200
    assert viewer.get("/api/v1/fleets").status_code == 200
    assert viewer.get("/api/v1/events").status_code == 200
    for method, path, body in (("post", DEV, device("d2")), ("put", f"{DEV}/d1", device("d1")),
                               ("delete", f"{DEV}/d1", None),
                               ("put", f"{DEV}/d1/decommission", {"target": "Unenroll"}),
                               ("post", "/api/v1/deviceactions/resume", {"labelSelector": ""})):
        response = getattr(viewer, method)(path, body, format="json")
        assert response.status_code == 403, (method, path)
        assert response.json()["kind"] == "Status"
    denied = viewer.delete(f"{DEV}/d1")
    assert denied.json()["message"] == 'user "vera" may not delete devices'
    assert api.get(f"{DEV}/d1").status_code == 200  # nothing changed


def test_an_operator_manages_devices_and_fleets_but_not_enrollment(api):
    operator = client_for("otto", "operator")
    assert operator.post(DEV, device("d1"), format="json").status_code == 201
    assert operator.put(f"{DEV}/d1/decommission", {"target": "Unenroll"},
                        format="json").status_code == 200
    assert operator.delete(f"{DEV}/d1").status_code == 200
    assert operator.get("/api/v1/enrollmentrequests").status_code == 200
    approval = operator.put("/api/v1/enrollmentrequests/x/approval", {"approved": True},
                            format="json")
    assert approval.status_code == 403
    assert approval.json()["message"] == (
        'user "otto" may not update enrollmentrequests/approval')


def test_an_installer_approves_enrollment_and_sees_no_devices(api):
    installer = client_for("ines", "installer")
    assert installer.get("/api/v1/enrollmentrequests").status_code == 200
    assert installer.get("/api/v1/organizations").status_code == 200
    assert installer.get("/api/v1/certificatesigningrequests").status_code == 200
    assert installer.get("/api/v1/enrollmentconfig").status_code != 403
    assert installer.get(DEV).status_code == 403
    # Approval is allowed: the request goes on to the view (there is no such request here).
    assert installer.put("/api/v1/enrollmentrequests/x/approval", {"approved": True},
                         format="json").status_code == 404


def test_a_user_without_a_role_may_only_ask_who_it_is(db):
    nobody = client_for("nora", "")
    assert nobody.get(DEV).status_code == 403
    assert nobody.get("/api/v1/auth/userinfo").status_code == 200
    assert nobody.get("/api/v1/auth/permissions").json() == {"permissions": []}


def test_permissions_describe_the_role(api):
    full = api.get("/api/v1/auth/permissions").json()["permissions"]
    assert full == [{"resource": "*", "operations": ["get", "list", "create", "update", "patch",
                                                     "delete"]}]
    viewer = client_for("vic", "viewer").get("/api/v1/auth/permissions").json()
    assert viewer == {"permissions": [{"resource": "*", "operations": ["get", "list"]}]}
    installer = client_for("ian", "installer").get("/api/v1/auth/permissions").json()
    assert {"resource": "enrollmentrequests/approval", "operations": ["update"]} in (
        installer["permissions"])


def test_create_token_gives_a_role(tmp_path):
    from tests.test_server_command import BIN, server_env
    from tests.workers import database_url

    env = server_env(tmp_path, FLIGHTCTL_DATABASE_URL=database_url())
    done = subprocess.run([BIN / "flightctl-server", "create-token", "--username", "viewer1",
                           "--role", "viewer"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {done.stdout.strip()}")
    assert client.get(DEV).status_code == 200
    assert client.post(DEV, device("d9"), format="json").status_code == 403
    bad = subprocess.run([BIN / "flightctl-server", "create-token", "--username", "x",
                          "--role", "root"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "'root' is not one of" in bad.stderr
