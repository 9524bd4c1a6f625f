"""TPM attestation end to end on swtpm: a TPM-resident identity key, the EK chain, the
credential challenge over the agent API, and the device's integrity after approval."""

from __future__ import annotations

import base64

import pytest
from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT  # a missing tpm2-pytss fails collection

from tests.test_agent_api import device_name_of, enrollment_request
from tests.tpm_support import ManufacturerCA, SoftwareTPM, agent_api_server, enrollment_client

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def manufacturers(tmp_path_factory):
    """The trusted TPM manufacturer (configured as tpm_ca_files) and an unknown one."""
    root = tmp_path_factory.mktemp("tpm-manufacturers")
    trusted, unknown = ManufacturerCA(root / "trusted"), ManufacturerCA(root / "unknown")
    # swtpm_localca creates its CA with the first EK certificate it issues.
    SoftwareTPM(root / "bootstrap", trusted).stop()
    return trusted, unknown


@pytest.fixture(scope="module")
def tpm_server(django_db_setup, django_db_blocker, manufacturers, tmp_path_factory):
    trusted, _ = manufacturers
    with agent_api_server(tmp_path_factory.mktemp("agent-api-tpm"),
                          tpm_ca_files=trusted.ca_files()) as server:
        yield server


@pytest.fixture
def tpm_of(tmp_path):
    """``tpm_of(ca)``: a fresh swtpm whose EK certificate ``ca`` issued; stopped afterwards."""
    started = []

    def start(ca: ManufacturerCA) -> SoftwareTPM:
        started.append(SoftwareTPM(tmp_path / f"tpm{len(started)}", ca))
        return started[-1]

    yield start
    for tpm in started:
        tpm.stop()


def submit(api, server, tmp_path, tpm: SoftwareTPM):
    """The agent's side: build the TCG CSR in the TPM and create the EnrollmentRequest."""
    from flightctl_agent.tpm import TPMIdentity

    enrollment = enrollment_client(api, server, tmp_path / "enrollment")
    with TPMIdentity.open(tpm.tcti, tmp_path / "tpm-blob.json") as identity:
        name = identity.device_name()
        tcg_csr = identity.tcg_csr(product_model="swtpm", product_serial="0001")
        public = identity.public_key()
    assert name == device_name_of_public(public)
    created = enrollment.post("/api/v1/enrollmentrequests", enrollment_request(
        name, base64.b64encode(tcg_csr).decode()))
    assert created.status_code == 201, created.text
    return enrollment, name, created.json()


def device_name_of_public(public):
    class Holder:
        def public_key(self):
            return public

    return device_name_of(Holder())


def tpm_condition(er: dict) -> dict:
    return next(c for c in er["status"]["conditions"] if c["type"] == "TPMVerified")


def answer_challenge(enrollment, name, tpm, storage, *, tamper=False):
    from flightctl_agent.tpm import TPMIdentity

    challenge = enrollment.post(f"/api/v1/enrollmentrequests/{name}/tpmchallenge", {})
    assert challenge.status_code == 200, challenge.text
    body = challenge.json()
    with TPMIdentity.open(tpm.tcti, storage) as identity:
        secret = identity.activate_credential(base64.b64decode(body["credentialBlob"]),
                                              base64.b64decode(body["encryptedSecret"]))
    if tamper:
        secret = bytes([secret[0] ^ 1]) + secret[1:]
    return enrollment.post(f"/api/v1/enrollmentrequests/{name}/tpmchallenge/response",
                           {"secret": base64.b64encode(secret).decode()})


def test_a_tpm_device_proves_its_identity_and_enrolls_verified(
        tpm_server, manufacturers, tpm_of, api, tmp_path):
    from devices.models import Device
    from enrollment.tpm import parse_tcg_csr

    trusted, _ = manufacturers
    tpm = tpm_of(trusted)
    enrollment, name, created = submit(api, tpm_server, tmp_path, tpm)
    assert tpm_condition(created)["reason"] == "TPMChallengeRequired"

    # The identity key was generated in the TPM and is bound to it: its public area (which the
    # LAK certified and the server verified) says fixedTPM and sensitiveDataOrigin, and the
    # key blob the agent stores is the TPM-wrapped private part, not a usable key.
    raw = base64.b64decode(created["spec"]["csr"])
    area, _ = TPM2B_PUBLIC.unmarshal(parse_tcg_csr(raw).signing_public)
    attributes = area.publicArea.objectAttributes
    assert attributes & TPMA_OBJECT.FIXEDTPM and attributes & TPMA_OBJECT.FIXEDPARENT
    assert attributes & TPMA_OBJECT.SENSITIVEDATAORIGIN
    stored = (tmp_path / "tpm-blob.json").read_text()
    assert "PRIVATE KEY" not in stored and (tmp_path / "tpm-blob.json").stat().st_mode & 0o077 == 0

    answered = answer_challenge(enrollment, name, tpm, tmp_path / "tpm-blob.json")
    assert answered.status_code == 200, answered.text
    condition = tpm_condition(answered.json())
    assert (condition["status"], condition["reason"]) == ("True", "TPMChallengeSucceeded")

    approval = api.put(f"/api/v1/enrollmentrequests/{name}/approval", {"approved": True},
                       format="json")
    assert approval.status_code == 200, approval.json()
    integrity = Device.objects.get(name=name).status["integrity"]
    assert integrity["status"] == "Verified"
    assert integrity["tpm"] == {"status": "Verified"}
    assert integrity["deviceIdentity"] == {"status": "Verified"}
    # The device certificate is for the TPM key.
    from cryptography import x509

    from enrollment.signers import public_key_der

    er = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()
    cert = x509.load_pem_x509_certificate(er["status"]["certificate"].encode())
    with_tpm_key = x509.load_pem_x509_csr(parse_tcg_csr(raw).csr_pem).public_key()
    assert public_key_der(cert.public_key()) == public_key_der(with_tpm_key)


def test_a_tpm_from_an_unknown_manufacturer_fails_verification(
        tpm_server, manufacturers, tpm_of, api, tmp_path):
    from devices.models import Device

    _, unknown = manufacturers
    tpm = tpm_of(unknown)
    enrollment, name, created = submit(api, tpm_server, tmp_path, tpm)
    condition = tpm_condition(created)
    assert (condition["status"], condition["reason"]) == ("False", "TPMVerificationFailed")
    assert "does not chain to a trusted TPM manufacturer CA" in condition["message"]
    refused = enrollment.post(f"/api/v1/enrollmentrequests/{name}/tpmchallenge", {})
    assert refused.status_code == 409

    api.put(f"/api/v1/enrollmentrequests/{name}/approval", {"approved": True}, format="json")
    assert Device.objects.get(name=name).status["integrity"]["status"] == "Failed"


def test_a_wrong_challenge_answer_fails_the_tpm_challenge(
        tpm_server, manufacturers, tpm_of, api, tmp_path):
    trusted, _ = manufacturers
    tpm = tpm_of(trusted)
    enrollment, name, _ = submit(api, tpm_server, tmp_path, tpm)
    answered = answer_challenge(enrollment, name, tpm, tmp_path / "tpm-blob.json", tamper=True)
    assert answered.status_code == 403
    assert answered.json()["message"].startswith("TPM challenge failed")
    er = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()
    condition = tpm_condition(er)
    assert (condition["status"], condition["reason"]) == ("False", "TPMChallengeFailed")
    # One answer per challenge: answering again without a new challenge is refused.
    again = enrollment.post(f"/api/v1/enrollmentrequests/{name}/tpmchallenge/response",
                            {"secret": base64.b64encode(b"x" * 32).decode()})
    assert again.status_code == 409
