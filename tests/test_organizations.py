"""Organizations that hold: two organizations with a device and a fleet of the same names; a
user of one sees and changes only that one through the user API; the ``org_id`` rules (member
or 403, one organization implicit, several 400); and a device whose certificate names
organization A cannot read or write organization B's device of the same name through the
agent API."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from tests.test_agent_api import agent_server, device_name_of  # noqa: F401 - a fixture
from tests.test_device_api import device
from tests.tpm_support import AgentClient, key_pem, new_key

pytestmark = pytest.mark.django_db(transaction=True)

DEV, FLEET = "/api/v1/devices", "/api/v1/fleets"


def organization(name: str):
    from flightctl.models import Organization

    return Organization.objects.create(id=uuid.uuid4(), display_name=name, external_id=name)


def member(username: str, memberships: dict) -> APIClient:
    """A user with ``{org: [roles]}`` memberships and a bearer token."""
    from django.contrib.auth import get_user_model

    from flightctl.models import ApiToken, OrganizationMembership

    user = get_user_model().objects.create_user(username)
    for org, roles in memberships.items():
        OrganizationMembership.objects.create(user=user, org=org, roles=roles)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)}")
    return client


def fleet(name: str, site: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"site": site}},
                     "template": {"spec": {"os": {"image": f"quay.io/{site}/os:1"}}}}}


@pytest.fixture
def two_orgs(api):
    """Organizations A and B, each with device ``dev1`` and fleet ``f1`` of its own."""
    a, b = organization("org-a"), organization("org-b")
    for org, site in ((a, "a"), (b, "b")):
        body = device("dev1")
        body["metadata"]["labels"] = {"site": site}
        assert api.post(f"{DEV}?org_id={org.id}", body, format="json").status_code == 201
        assert api.post(f"{FLEET}?org_id={org.id}", fleet("f1", site),
                        format="json").status_code == 201
    return a, b


def test_a_member_of_one_organization_sees_and_changes_only_it(api, two_orgs):
    from devices.models import Device

    a, b = two_orgs
    alice = member("alice", {a: ["operator"]})
    # One organization: implicit.
    listed = alice.get(DEV).json()["items"]
    assert [(d["metadata"]["name"], d["metadata"]["labels"]["site"]) for d in listed] == [
        ("dev1", "a")]
    assert alice.get(f"{FLEET}/f1").json()["spec"]["selector"]["matchLabels"] == {"site": "a"}
    changed = device("dev1")
    changed["metadata"]["labels"] = {"site": "a", "rack": "r9"}
    assert alice.put(f"{DEV}/dev1", changed, format="json").status_code == 200
    assert alice.delete(f"{FLEET}/f1").status_code == 200
    assert Device.objects.get(org_id=b.id, name="dev1").labels == {"site": "b"}
    assert api.get(f"{FLEET}/f1?org_id={b.id}").status_code == 200  # B's fleet is still there
    # Naming B: not a member, 403, for reads and writes alike.
    for response in (alice.get(f"{DEV}?org_id={b.id}"),
                     alice.delete(f"{DEV}/dev1?org_id={b.id}"),
                     alice.get(f"/api/v1/events?org_id={b.id}")):
        assert response.status_code == 403
        assert response.json()["message"] == "user is not a member of the organization"
    assert [o["metadata"]["name"] for o in alice.get("/api/v1/organizations").json()[
        "items"]] == [str(a.id)]
    # Events of A's changes are A's.
    assert alice.get("/api/v1/events?fieldSelector=involvedObject.name%3Ddev1").json()[
        "items"]
    assert not api.get(f"/api/v1/events?org_id={b.id}&fieldSelector=reason%3DResourceUpdated"
                       ).json()["items"]


def test_org_id_rules(api, two_orgs):
    a, b = two_orgs
    both = member("bob", {a: ["viewer"], b: ["operator"]})
    ambiguous = both.get(DEV)
    assert ambiguous.status_code == 400 and "ambiguous organization" in ambiguous.json()[
        "message"]
    assert both.get(f"{DEV}?org_id={a.id}").status_code == 200
    # Roles are per organization: a viewer in A, an operator in B.
    assert both.delete(f"{DEV}/dev1?org_id={a.id}").status_code == 403
    assert both.delete(f"{DEV}/dev1?org_id={b.id}").status_code == 200
    assert both.get(f"{DEV}?org_id=not-a-uuid").status_code == 400
    assert both.get(f"{DEV}?org_id={uuid.uuid4()}").status_code == 403
    # An external user with no organization at all.
    nowhere = member("corp:nobody", {})
    assert nowhere.get(DEV).status_code == 403
    # The administrator names any existing organization; without org_id, the default one.
    assert api.get(f"{DEV}?org_id={b.id}").json()["items"] == []
    assert api.get(DEV).json()["items"] == []
    listed = {o["metadata"]["name"] for o in api.get("/api/v1/organizations").json()["items"]}
    assert {str(a.id), str(b.id)} <= listed


def test_a_device_of_one_organization_cannot_touch_the_other(api, agent_server, tmp_path):  # noqa: F811
    from devices.models import Device
    from enrollment.signers import service_pki
    from flightctl import pki

    a, b = organization("org-a"), organization("org-b")
    key = new_key()
    name = device_name_of(key)
    for org, site in ((a, "a"), (b, "b")):
        body = device(name)
        body["metadata"]["labels"] = {"site": site}
        assert api.post(f"{DEV}?org_id={org.id}", body, format="json").status_code == 201
    Device.objects.filter(org_id=b.id, name=name).update(
        rendered_spec={"os": {"image": "quay.io/b/os:1"}}, rendered_version=1)
    cert = pki.issue_client_certificate(
        service_pki().client_signer, key.public_key(), pki.DEVICE_CN_PREFIX + name,
        pki.SIGNER_DEVICE_ENROLLMENT, org_id=a.id, fingerprint=name)
    agent = AgentClient(agent_server, pki.cert_pem(cert), key_pem(key), tmp_path / "a")
    # A's device is not rendered yet: B's rendered spec of the same name is never served.
    rendered = agent.get(f"/api/v1/devices/{name}/rendered")
    assert rendered.status_code == 409 and "quay.io/b" not in rendered.text
    status = api.get(f"{DEV}/{name}?org_id={a.id}").json()
    status["status"]["systemInfo"] = {"bootID": "from-a", "architecture": "amd64",
                                      "operatingSystem": "linux", "agentVersion": "0.1"}
    assert agent.put(f"/api/v1/devices/{name}/status", status).status_code == 200
    assert Device.objects.get(org_id=a.id, name=name).status["systemInfo"]["bootID"] == "from-a"
    assert "systemInfo" not in Device.objects.get(org_id=b.id, name=name).status or (
        Device.objects.get(org_id=b.id, name=name).status["systemInfo"].get("bootID")
        != "from-a")
    # A certificate naming an organization that is not there finds nothing.
    stray = pki.issue_client_certificate(
        service_pki().client_signer, key.public_key(), pki.DEVICE_CN_PREFIX + name,
        pki.SIGNER_DEVICE_ENROLLMENT, org_id=uuid.uuid4(), fingerprint=name)
    elsewhere = AgentClient(agent_server, pki.cert_pem(stray), key_pem(key), tmp_path / "x")
    assert elsewhere.get(f"/api/v1/devices/{name}/rendered").status_code == 404


def test_a_device_enrolled_in_one_organization_carries_it_and_cannot_touch_the_other(
        api, agent_server, tmp_path):  # noqa: F811
    """The whole enrollment path in organization A, by a member of A: the enrollment
    certificate, the EnrollmentRequest, the approval and the device certificate all carry A;
    B holds a device of the very same name, which the enrolled device never reaches."""
    from cryptography import x509

    from devices.models import Device
    from enrollment.models import EnrollmentRequest
    from flightctl import pki
    from tests.test_agent_api import enroll

    a, b = organization("org-a"), organization("org-b")
    alice = member("alice", {a: ["org-admin"]})
    agent, name, _key = enroll(alice, agent_server, tmp_path, labels={"site": "a"})
    assert EnrollmentRequest.objects.get(name=name).org_id == a.id
    assert Device.objects.get(name=name).org_id == a.id
    body = device(name)
    body["metadata"]["labels"] = {"site": "b"}
    assert api.post(f"{DEV}?org_id={b.id}", body, format="json").status_code == 201
    Device.objects.filter(org_id=b.id, name=name).update(
        rendered_spec={"os": {"image": "quay.io/b/os:1"}}, rendered_version=7)
    certificate = x509.load_pem_x509_certificate(agent.cert_file.read_bytes())
    assert pki.certificate_extension(certificate, pki.OID_ORG_ID) == str(a.id)

    rendered = agent.get(f"/api/v1/devices/{name}/rendered")
    assert "quay.io/b" not in rendered.text
    status = alice.get(f"{DEV}/{name}").json()
    status["status"]["systemInfo"] = {"bootID": "enrolled-in-a", "architecture": "amd64",
                                      "operatingSystem": "linux", "agentVersion": "0.1"}
    assert agent.put(f"/api/v1/devices/{name}/status", status).status_code == 200
    assert Device.objects.get(org_id=a.id, name=name).status["systemInfo"][
        "bootID"] == "enrolled-in-a"
    assert (Device.objects.get(org_id=b.id, name=name).status or {}).get(
        "systemInfo", {}).get("bootID") != "enrolled-in-a"
    # A's user cannot see B's device; B's device is untouched by A's agent.
    assert alice.get(f"{DEV}/{name}?org_id={b.id}").status_code == 403
    assert Device.objects.get(org_id=b.id, name=name).rendered_version == 7
