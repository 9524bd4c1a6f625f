"""An EnrollmentRequest is named after its device's key: nobody can squat another device's
name with a CSR of a different key (the real device would then get 409, and an approval would
sign the squatter's key as that device), through either API; with a TPM, the attested key
must carry the name too. A CSR whose common name cannot go into a certificate is refused when
it is made, so an approved request can always be signed."""

from __future__ import annotations

import base64
import dataclasses
import struct

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from flightctl import pki
from tests.conftest import REFERENCE
from tests.test_agent_api import agent_server, enrollment_request  # noqa: F401 - fixture
from tests.tpm_support import csr_pem, enrollment_client, new_key

ERS = "/api/v1/enrollmentrequests"


def csr_request(name: str, request: str, signer: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": request, "signerName": signer, "usages": ["clientAuth"]}}


@pytest.fixture
def pki_dir(settings, tmp_path):
    settings.FLIGHTCTL = dataclasses.replace(settings.FLIGHTCTL, data_dir=tmp_path / "data")


def fingerprint(key) -> str:
    return pki.device_fingerprints(key.public_key())[0]


def assert_refused(response, fragment):
    body = response.json()
    assert response.status_code == 400, body
    assert body["kind"] == "Status" and fragment in body["message"], body


def squat(post):
    """Try to take ``victim``'s name with the attacker's key; then the victim enrolls."""
    victim, attacker = new_key(), new_key()
    name = fingerprint(victim)
    # The CSR names the victim (so the CN check passes) but carries the attacker's key.
    assert_refused(post(enrollment_request(name, csr_pem(attacker, name))),
                   "must be the fingerprint of the CSR's public key")
    created = post(enrollment_request(name, csr_pem(victim, name)))
    assert created.status_code == 201, created.content


@pytest.mark.django_db
def test_a_squatted_name_is_refused_on_the_user_api(api, pki_dir):
    squat(lambda body: api.post(ERS, body, format="json"))


@pytest.mark.django_db(transaction=True)
def test_a_squatted_name_is_refused_on_the_agent_api(agent_server, api, tmp_path):  # noqa: F811
    enrollment = enrollment_client(api, agent_server, tmp_path / "enrollment")
    squat(lambda body: enrollment.post(ERS, body))


@pytest.mark.django_db
def test_the_hex_fingerprint_of_earlier_agents_is_a_name_too(api, pki_dir):
    example = yaml.safe_load((REFERENCE / "examples" / "enrollmentrequest.yaml").read_text())
    assert api.post(ERS, example, format="json").status_code == 201
    key = new_key()
    hex_name = pki.device_fingerprints(key.public_key())[1]
    assert api.post(ERS, enrollment_request(hex_name, csr_pem(key, hex_name)),
                    format="json").status_code == 201


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _tpm_public(key) -> bytes:
    """TPM2B_PUBLIC of an ECC P-256 signing key (the LDevID's public area)."""
    numbers = key.public_key().public_numbers()
    area = (struct.pack(">HHI", 0x0023, 0x000B, 0x00040072) + _tpm2b(b"")
            + struct.pack(">HHHH", 0x0010, 0x0010, 0x0003, 0x0010)
            + _tpm2b(numbers.x.to_bytes(32, "big")) + _tpm2b(numbers.y.to_bytes(32, "big")))
    return _tpm2b(area)


def _tcg_csr(csr: str, ldevid) -> str:
    """A TCG CSR structure around ``csr`` attesting ``ldevid`` (signatures left empty: the
    name is checked before any signature)."""
    parts = [b""] * 13
    parts[2], parts[9] = csr.encode(), _tpm_public(ldevid)
    signed = (b"\x00\x00\x01\x00" + struct.pack(">II", 0x000B, 32)
              + b"".join(struct.pack(">I", len(p)) for p in parts) + b"".join(parts))
    raw = b"\x01\x00\x01\x00" + struct.pack(">II", len(signed), 0) + signed
    return base64.b64encode(raw).decode()


@pytest.mark.django_db
def test_a_tpm_request_must_be_named_after_the_attested_key(api, pki_dir):
    ours, attested = new_key(), new_key()
    name = fingerprint(ours)
    body = enrollment_request(name, _tcg_csr(csr_pem(ours, name), attested))
    assert_refused(api.post(ERS, body, format="json"), "fingerprint of the attested TPM key")
    # Named after the attested key, with the CSR of the same key: accepted (verification of
    # the forged statement then fails, as it would for any unverifiable TPM).
    name = fingerprint(attested)
    body = enrollment_request(name, _tcg_csr(csr_pem(attested, name), attested))
    created = api.post(ERS, body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["status"]["conditions"][0]["reason"] == "TPMVerificationFailed"


def _long_cn_csr(key, cn: str) -> str:
    attribute = x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)
    request = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([attribute])).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Attribute's length")
def test_a_common_name_over_64_characters_is_refused_when_requested(api, pki_dir):
    key = new_key()
    csr = base64.b64encode(_long_cn_csr(key, "svc-" + "a" * 70).encode()).decode()
    for signer in ("flightctl.io/server-svc", "enrollment"):
        response = api.post("/api/v1/certificatesigningrequests", csr_request(
            "long", csr, signer), format="json")
        assert_refused(response, "at most 64")
    # 60 characters fit the CSR, but not with the "client-enrollment-" the certificate gets.
    csr = base64.b64encode(csr_pem(key, "x" * 60).encode()).decode()
    response = api.post("/api/v1/certificatesigningrequests", csr_request(
        "prefixed", csr, "enrollment"), format="json")
    assert_refused(response, "at most 64")
    name = fingerprint(key)
    long_er = enrollment_request(name, _long_cn_csr(key, name + "-" + "b" * 40))
    assert_refused(api.post(ERS, long_er, format="json"), "at most 64")
