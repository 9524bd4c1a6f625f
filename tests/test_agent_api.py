"""The agent API as devices meet it: a real server process, real TLS handshakes, client
certificates issued by our CA (and one that is not)."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from django.db import transaction

from tests.tpm_support import (
    AgentClient,
    agent_api_server,
    csr_pem,
    enrollment_client,
    key_pem,
    new_key,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def agent_server(django_db_setup, django_db_blocker, tmp_path_factory):
    with agent_api_server(tmp_path_factory.mktemp("agent-api")) as server:
        yield server


def device_name_of(key) -> str:
    from flightctl_agent.tpm import device_name

    return device_name(key.public_key())


def enrollment_request(name: str, csr: str, **spec) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "EnrollmentRequest",
            "metadata": {"name": name},
            "spec": {"csr": csr, "labels": {"arch": "x86-64"},
                     "deviceStatus": {"systemInfo": {"architecture": "amd64", "bootID": "b1",
                                                     "operatingSystem": "linux",
                                                     "agentVersion": "0.1"}},
                     **spec}}


def enroll(api, server, directory, labels=None):
    """Enroll one file-backed device; return (its agent client, its name, its key)."""
    enrollment = enrollment_client(api, server, directory / "enrollment")
    key = new_key()
    name = device_name_of(key)
    created = enrollment.post("/api/v1/enrollmentrequests",
                              enrollment_request(name, csr_pem(key, name)))
    assert created.status_code == 201, created.text
    approval = api.put(f"/api/v1/enrollmentrequests/{name}/approval",
                       {"approved": True, "labels": labels or {}}, format="json")
    assert approval.status_code == 200, approval.json()
    certificate = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()["status"][
        "certificate"]
    return AgentClient(server, certificate, key_pem(key), directory / name), name, key


def render(name: str, spec: dict, version: int) -> None:
    """Stand-in for the render code: new rendered spec and its NOTIFY, in one transaction."""
    from devices.bulk import notify_rendered
    from devices.models import Device

    with transaction.atomic():
        Device.objects.filter(name=name).update(rendered_spec=spec, rendered_version=version)
        notify_rendered(Device.objects.get(name=name))


def test_a_device_enrolls_with_a_file_key_is_approved_and_then_manages_only_itself(
        agent_server, api, tmp_path):
    from devices.models import Device

    enrollment = enrollment_client(api, agent_server, tmp_path / "enrollment")
    key = new_key()
    name = device_name_of(key)
    body = enrollment_request(name, csr_pem(key, name))
    body["status"] = {"certificate": "forged"}  # agents cannot set status
    created = enrollment.post("/api/v1/enrollmentrequests", body)
    assert created.status_code == 201, created.text
    assert "certificate" not in created.json()["status"]
    assert enrollment.post("/api/v1/enrollmentrequests", body).status_code == 409
    pending = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()
    assert pending["status"]["conditions"] == [] and "approval" not in pending["status"]
    assert not Device.objects.filter(name=name).exists()

    # A user approves in the waiting room, adding a label to the agent's.
    approval = api.put(f"/api/v1/enrollmentrequests/{name}/approval",
                       {"approved": True, "labels": {"site": "lab"}}, format="json").json()
    assert approval["approved"] is True and approval["approvedBy"] == "admin"
    assert approval["labels"] == {"arch": "x86-64", "site": "lab"}
    approved = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()
    cert = x509.load_pem_x509_certificate(approved["status"]["certificate"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"device:{name}"
    device = Device.objects.get(name=name)
    assert device.labels == {"arch": "x86-64", "site": "lab"}
    assert device.status["lifecycle"]["status"] == "Enrolled"
    assert device.status["integrity"]["status"] == "Unsupported"
    assert device.status["systemInfo"]["bootID"] == "b1"

    agent = AgentClient(agent_server, approved["status"]["certificate"], key_pem(key),
                        tmp_path / "device")
    # Not rendered yet: 409. Rendered: its own spec. Known version: nothing newer → 204.
    response = agent.get(f"/api/v1/devices/{name}/rendered")
    assert response.status_code == 409
    assert response.json()["message"] == "no rendered version for device"
    render(name, {"os": {"image": "quay.io/example/os:1"}}, 1)
    rendered = agent.get(f"/api/v1/devices/{name}/rendered", params={"knownRenderedVersion": 0})
    assert rendered.status_code == 200
    assert rendered.json()["spec"] == {"os": {"image": "quay.io/example/os:1"}}
    started = time.monotonic()
    idle = agent.get(f"/api/v1/devices/{name}/rendered", params={"knownRenderedVersion": 1})
    assert idle.status_code == 204 and idle.content == b""
    assert time.monotonic() - started >= 2.5  # waited for the (test-sized) 3 s timeout
    assert Device.objects.get(name=name).last_seen is not None

    # It writes its own status (PUT and PATCH) ...
    document = rendered.json()
    document["status"]["summary"] = {"status": "Online", "info": ""}
    document["status"]["systemInfo"]["bootID"] = "b2"
    put = agent.put(f"/api/v1/devices/{name}/status", document)
    assert put.status_code == 200, put.text
    assert Device.objects.get(name=name).status["systemInfo"]["bootID"] == "b2"
    patched = agent.request(
        "PATCH", f"/api/v1/devices/{name}/status",
        data='[{"op": "replace", "path": "/status/systemInfo/bootID", "value": "b3"}]',
        headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert Device.objects.get(name=name).status["systemInfo"]["bootID"] == "b3"
    spec_patch = agent.request(
        "PATCH", f"/api/v1/devices/{name}/status",
        data='[{"op": "add", "path": "/spec/os", "value": {"image": "x"}}]',
        headers={"Content-Type": "application/json-patch+json"})
    assert spec_patch.status_code == 400 and "spec is immutable" in spec_patch.json()["message"]

    # ... and nobody else's.
    other = enroll(api, agent_server, tmp_path / "other")[1]
    for method, path in (("GET", f"/api/v1/devices/{other}/rendered"),
                         ("PUT", f"/api/v1/devices/{other}/status")):
        refused = agent.request(method, path, json=document)
        assert refused.status_code == 401, refused.text
        assert refused.json()["kind"] == "Status"

    # The enrollment certificate is good for enrollment only, the device one for devices only.
    wrong = enrollment.get(f"/api/v1/devices/{name}/rendered")
    assert wrong.status_code == 401
    assert wrong.json()["message"] == (
        'unexpected client certificate signer: expected "flightctl.io/device-enrollment", '
        'got "flightctl.io/enrollment"')
    assert enrollment.put(f"/api/v1/devices/{name}/status", document).status_code == 401
    refused = agent.get(f"/api/v1/enrollmentrequests/{name}")
    assert refused.status_code == 401
    assert 'expected "flightctl.io/enrollment"' in refused.json()["message"]
    # Only the agent operations exist on this port.
    assert agent.get("/api/v1/devices").status_code == 404
    assert agent.get(f"/api/v1/devices/{name}").status_code == 404


def test_a_waiting_long_poll_is_woken_by_a_render_within_a_second(agent_server, api, tmp_path):
    agent, name, _ = enroll(api, agent_server, tmp_path)
    render(name, {"os": {"image": "os:1"}}, 1)
    result = {}

    def poll():
        result["response"] = agent.get(f"/api/v1/devices/{name}/rendered",
                                       params={"knownRenderedVersion": 1})
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(1.0)  # the poll is waiting now (the timeout is 3 s)
    assert waiter.is_alive()
    rendered_at = time.monotonic()
    render(name, {"os": {"image": "os:2"}}, 2)
    waiter.join(5)
    response = result["response"]
    assert response.status_code == 200
    assert response.json()["spec"] == {"os": {"image": "os:2"}}
    assert result["at"] - rendered_at < 1.0


def test_a_long_poll_for_a_device_that_does_not_exist_is_404(agent_server, api, tmp_path):
    from devices.models import Device

    agent, name, _ = enroll(api, agent_server, tmp_path)
    Device.objects.filter(name=name).delete()
    response = agent.get(f"/api/v1/devices/{name}/rendered")
    assert response.status_code == 404
    assert response.json()["message"] == f'Device of name "{name}" not found'


def test_the_hot_operations_answer_like_every_agent_operation(agent_server, api, tmp_path):
    """The long-poll and status PUTs are served ahead of Django (agent_api/
    hotpath.py); their errors, headers and negotiation are those of the other operations."""
    agent, name, _ = enroll(api, agent_server, tmp_path)
    render(name, {"os": {"image": "os:1"}}, 1)
    url = f"/api/v1/devices/{name}/rendered"
    ok = agent.get(url)
    status = agent.get(f"/api/v1/devices/{name}/status")  # a Django-served operation
    for response in (ok, status):
        assert response.headers["Flightctl-API-Version"] == "v1beta1"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "max-age" in response.headers["Strict-Transport-Security"]
    assert ok.status_code == 200 and ok.headers["Content-Type"] == "application/json"
    assert ok.json()["metadata"]["name"] == name and ok.json()["kind"] == "Device"
    bad = agent.get(url, params={"knownRenderedVersion": "x"})
    assert bad.status_code == 400
    assert bad.json() == {"apiVersion": "flightctl.io/v1beta1", "kind": "Status",
                          "status": "Failure", "code": 400, "reason": "Bad Request",
                          "message": "invalid knownRenderedVersion 'x': must be an integer"}
    posted = agent.request("POST", url, json={})
    assert posted.status_code == 405
    assert posted.json()["message"] == 'Method "POST" not allowed.'
    old = agent.get(url, headers={"Flightctl-API-Version": "v1alpha1"})
    assert old.status_code == 406
    assert old.headers["Flightctl-API-Versions-Supported"] == "v1beta1"
    assert old.json()["kind"] == "Status"

    status_url = f"/api/v1/devices/{name}/status"
    garbled = agent.request("PUT", status_url, data=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert garbled.status_code == 400
    assert garbled.json()["message"] == "API Error: request body is not valid JSON"
    assert garbled.headers["Flightctl-API-Version"] == "v1beta1"
    document = ok.json()
    document["metadata"]["name"] = "someone-else"
    mismatch = agent.put(status_url, document)
    assert mismatch.status_code == 400 and mismatch.json()["kind"] == "Status"
    huge = agent.request("PUT", status_url, data=b" " * (3 * 2**20),
                         headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and huge.json()["message"] == "request body too large"
    document["metadata"]["name"] = name
    document["status"]["systemInfo"] = {"bootID": "hot"}
    stored = agent.put(status_url, document)
    assert stored.status_code == 200, stored.text
    assert stored.json()["status"]["systemInfo"]["bootID"] == "hot"
    assert stored.json()["metadata"]["name"] == name


def test_no_client_certificate_fails_the_handshake(agent_server):
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        requests.get(f"{agent_server.url}/api/v1/enrollmentrequests/x",
                     verify=str(agent_server.ca_bundle), timeout=10)


def test_a_certificate_from_another_ca_fails_the_handshake(agent_server, tmp_path):
    from flightctl import pki
    from flightctl.models import DEFAULT_ORG_ID

    rogue = pki.CertificateAuthority(tmp_path / "rogue", "flightctl-ca")
    key = new_key()
    cert = pki.issue_client_certificate(rogue, key.public_key(), "client-enrollment",
                                        pki.SIGNER_ENROLLMENT, org_id=DEFAULT_ORG_ID)
    agent = AgentClient(agent_server, pki.cert_pem(cert), key_pem(key), tmp_path / "client")
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        agent.get("/api/v1/enrollmentrequests/x")


def test_an_expired_device_certificate_fails_the_handshake(agent_server, api, tmp_path):
    from enrollment.signers import service_pki
    from flightctl import pki

    key = new_key()
    signer = service_pki().client_signer
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device:x" * 3)]))
            .issuer_name(signer.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=2))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(signer.key, hashes.SHA256()))
    agent = AgentClient(agent_server, pki.cert_pem(cert), key_pem(key), tmp_path / "client")
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        agent.get("/api/v1/enrollmentrequests/x")


def test_private_keys_are_0600_and_never_in_a_response_or_the_log(agent_server, api, tmp_path):
    agent, name, _ = enroll(api, agent_server, tmp_path)
    render(name, {"os": {"image": "os:1"}}, 1)
    csr_name = api.get("/api/v1/certificatesigningrequests").json()["items"][0]["metadata"][
        "name"]
    bodies = [
        agent.get(f"/api/v1/devices/{name}/rendered").text,
        api.get("/api/v1/enrollmentconfig", {"csr": csr_name}).content.decode(),
        api.get("/api/v1/enrollmentconfig").content.decode(),
        api.get("/api/v1/enrollmentrequests").content.decode(),
        api.get("/api/v1/certificatesigningrequests").content.decode(),
        api.get("/api/v1/events").content.decode(),
    ]
    for body in bodies:
        assert "PRIVATE KEY" not in body
    keys = sorted((agent_server.data_dir / "pki").glob("*.key"))
    assert {k.name for k in keys} >= {"ca.key", "client-signer.key", "server.key"}
    for path in keys:
        assert path.stat().st_mode & 0o777 == 0o600, path
        secret = path.read_text().strip().splitlines()[1]  # a line of the key's base64
        assert secret not in agent_server.log.read_text()
        assert all(secret not in body for body in bodies)
    assert "PRIVATE KEY" not in agent_server.log.read_text()
    assert "PRIVATE" not in agent_server.ca_bundle.read_text()
