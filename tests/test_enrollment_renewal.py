"""Certificate rotation as the agent does it: a renewal CSR with the same key, over mutual TLS."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography import x509

from flightctl import pki
from tests.test_agent_api import agent_server, enroll, render  # noqa: F401 - fixture
from tests.tpm_support import AgentClient, csr_pem, key_pem, new_key

pytestmark = pytest.mark.django_db(transaction=True)


def renewal(name: str, csr: str, signer=pki.SIGNER_DEVICE_RENEWAL, **spec) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": f"{name[:20]}-{uuid.uuid4().hex[:8]}"},
            "spec": {"request": base64.b64encode(csr.encode()).decode(), "signerName": signer,
                     "usages": ["clientAuth", "CA:false"], **spec}}


def test_a_renewed_certificate_works_with_the_same_key(agent_server, api, tmp_path):  # noqa: F811
    agent, name, key = enroll(api, agent_server, tmp_path)
    render(name, {"os": {"image": "os:1"}}, 1)
    old = x509.load_pem_x509_certificate(agent.cert_file.read_bytes())

    created = agent.post("/api/v1/certificatesigningrequests",
                         renewal(name, csr_pem(key, name), expirationSeconds=3600))
    assert created.status_code == 201, created.text
    csr = created.json()
    assert csr["metadata"]["owner"] == f"Device/{name}"
    approved = next(c for c in csr["status"]["conditions"] if c["type"] == "Approved")
    assert approved["message"] == f"Auto-approved by {pki.SIGNER_DEVICE_RENEWAL}"
    polled = agent.get(f"/api/v1/certificatesigningrequests/{csr['metadata']['name']}").json()
    new_pem = base64.b64decode(polled["status"]["certificate"])
    new = x509.load_pem_x509_certificate(new_pem)
    assert new.serial_number != old.serial_number
    assert pki.certificate_extension(new, pki.OID_SIGNER) == pki.SIGNER_DEVICE_RENEWAL
    assert pki.certificate_extension(new, pki.OID_FINGERPRINT) == name
    assert pki.common_name(new) == f"device:{name}"
    lifetime = new.not_valid_after_utc - new.not_valid_before_utc
    assert lifetime.total_seconds() <= 3600 + 300

    # The agent swaps in the new certificate and keeps its key file: nothing else is needed.
    renewed = AgentClient(agent_server, new_pem, key_pem(key), tmp_path / "renewed")
    assert renewed.key_file.read_bytes() == agent.key_file.read_bytes()
    assert renewed.get(f"/api/v1/devices/{name}/rendered").status_code == 200
    assert renewed.post("/api/v1/certificatesigningrequests",
                        renewal(name, csr_pem(key, name))).status_code == 201


def test_renewal_refuses_another_name_another_key_and_other_devices_requests(
        agent_server, api, tmp_path):  # noqa: F811
    agent, name, key = enroll(api, agent_server, tmp_path / "a")
    other_agent, other, _ = enroll(api, agent_server, tmp_path / "b")

    mismatch = agent.post("/api/v1/certificatesigningrequests",
                          renewal(name, csr_pem(key, other)))
    assert mismatch.status_code == 400
    assert "csr CN mismatch" in mismatch.json()["message"]
    new_key_request = agent.post("/api/v1/certificatesigningrequests",
                                 renewal(name, csr_pem(new_key(), name)))
    assert new_key_request.status_code == 400
    assert "csr public key mismatch" in new_key_request.json()["message"]
    enrollment_signer = agent.post("/api/v1/certificatesigningrequests",
                                   renewal(name, csr_pem(key, name), signer="enrollment"))
    assert enrollment_signer.status_code == 400

    created = agent.post("/api/v1/certificatesigningrequests", renewal(name, csr_pem(key, name)))
    csr_name = created.json()["metadata"]["name"]
    stolen = other_agent.get(f"/api/v1/certificatesigningrequests/{csr_name}")
    assert stolen.status_code == 401


def test_a_decommissioning_device_cannot_renew(agent_server, api, tmp_path):  # noqa: F811
    from devices.models import Device

    agent, name, key = enroll(api, agent_server, tmp_path)
    device = Device.objects.get(name=name)
    device.spec = {"decommissioning": {"target": "Unenroll"}}
    device.status["lifecycle"] = {"status": "Decommissioning"}
    device.save()
    refused = agent.post("/api/v1/certificatesigningrequests", renewal(name, csr_pem(key, name)))
    assert refused.status_code == 401
    assert "decommissioning" in refused.json()["message"]
