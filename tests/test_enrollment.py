"""The user API of enrollment: the waiting room, approval rules, CSRs and the enrollment config."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from cryptography import x509

from flightctl import pki
from tests.test_agent_api import device_name_of, enrollment_request
from tests.test_openapi_conformance import assert_valid
from tests.tpm_support import csr_pem, new_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pki_dir(settings, tmp_path):
    settings.FLIGHTCTL = dataclasses.replace(settings.FLIGHTCTL, data_dir=tmp_path / "data")
    return tmp_path / "data" / "pki"


def new_request(api, labels=None, **spec):
    key = new_key()
    name = device_name_of(key)
    body = enrollment_request(name, csr_pem(key, name), **spec)
    if labels is not None:
        body["spec"]["labels"] = labels
    response = api.post("/api/v1/enrollmentrequests", body, format="json")
    assert response.status_code == 201, response.json()
    return name, body


def approve(api, name, **approval):
    return api.put(f"/api/v1/enrollmentrequests/{name}/approval",
                   {"approved": True, **approval}, format="json")


def csr_body(name, csr, signer="enrollment", **spec):
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr.encode()).decode(), "signerName": signer,
                     "usages": ["clientAuth", "CA:false"], **spec}}


def test_the_waiting_room_lists_pending_requests_and_approval_creates_the_device(api):
    from devices.models import Device
    from flightctl.models import Event

    pending, _ = new_request(api)
    approved, _ = new_request(api, labels={"arch": "arm64", "site": "agent"}, osMode="package")
    response = approve(api, approved, labels={"site": "berlin"})
    assert response.status_code == 200
    assert_valid(response.json(), "EnrollmentRequestApprovalStatus")

    listing = api.get("/api/v1/enrollmentrequests").json()
    assert_valid(listing, "EnrollmentRequestList")
    waiting = api.get("/api/v1/enrollmentrequests",
                      {"fieldSelector": "status.approval.approved!=true"}).json()
    assert [i["metadata"]["name"] for i in waiting["items"]] == [pending]
    done = api.get("/api/v1/enrollmentrequests",
                   {"fieldSelector": "status.approval.approved=true"}).json()
    assert [i["metadata"]["name"] for i in done["items"]] == [approved]
    er = done["items"][0]
    assert er["status"]["conditions"][0]["type"] == "Approved"
    assert er["status"]["conditions"][0]["reason"] == "ManuallyApproved"

    device = Device.objects.get(name=approved)
    assert device.labels == {"arch": "arm64", "site": "berlin"}  # the approval wins
    assert device.owner is None
    assert device.status["capabilities"] == {"osMode": "package"}
    assert device.status["lifecycle"] == {"status": "Enrolled"}
    assert_valid(api.get(f"/api/v1/devices/{approved}").json(), "Device")
    reasons = set(Event.objects.filter(involved_name=approved).values_list("reason", flat=True))
    assert {"ResourceCreated", "EnrollmentRequestApproved"} <= reasons
    cert = x509.load_pem_x509_certificate(er["status"]["certificate"].encode())
    assert pki.certificate_extension(cert, pki.OID_SIGNER) == pki.SIGNER_DEVICE_ENROLLMENT
    assert pki.certificate_extension(cert, pki.OID_FINGERPRINT) == approved
    assert pki.certificate_extension(cert, pki.OID_ORG_ID) == (
        "00000000-0000-0000-0000-000000000000")


def test_replace_labels_keeps_only_the_approval_labels(api):
    from devices.models import Device

    name, _ = new_request(api, labels={"arch": "arm64"})
    approve(api, name, labels={"site": "x"}, replaceLabels=True)
    assert Device.objects.get(name=name).labels == {"site": "x"}


def test_requests_are_refused_as_in_the_reference(api):
    key = new_key()
    name = device_name_of(key)
    fake = api.post("/api/v1/enrollmentrequests",
                    enrollment_request(name, csr_pem(key, "someone-else")), format="json")
    assert fake.status_code == 400
    assert "attempt to supply a fake CN" in fake.json()["message"]
    garbage = api.post("/api/v1/enrollmentrequests", enrollment_request(name, "not a csr"),
                       format="json")
    assert garbage.status_code == 400

    name, body = new_request(api)
    assert api.post("/api/v1/enrollmentrequests", body, format="json").status_code == 409
    assert approve(api, name).status_code == 200
    again = approve(api, name)
    assert again.status_code == 400
    assert again.json()["message"] == "Enrollment request is already approved"
    deleted = api.delete(f"/api/v1/enrollmentrequests/{name}")
    assert deleted.status_code == 409 and "device exists" in deleted.json()["message"]
    replaced = api.put(f"/api/v1/enrollmentrequests/{name}", body, format="json")
    assert replaced.status_code == 400
    assert "a resource with this name already exists" in replaced.json()["message"]


def test_a_denied_request_stays_denied_and_creates_no_device(api):
    from devices.models import Device

    name, _ = new_request(api)
    denied = api.put(f"/api/v1/enrollmentrequests/{name}/approval", {"approved": False},
                     format="json")
    assert denied.status_code == 200 and denied.json()["approved"] is False
    er = api.get(f"/api/v1/enrollmentrequests/{name}").json()
    assert any(c["type"] == "Denied" and c["status"] == "True" for c in er["status"]["conditions"])
    assert approve(api, name).status_code == 400
    assert not Device.objects.filter(name=name).exists()
    assert api.delete(f"/api/v1/enrollmentrequests/{name}").status_code == 200


def test_labels_may_change_but_the_spec_is_fixed(api):
    name, body = new_request(api)
    body["metadata"]["labels"] = {"team": "a"}
    assert api.put(f"/api/v1/enrollmentrequests/{name}", body, format="json").status_code == 200
    body["spec"]["labels"] = {"other": "x"}
    changed = api.put(f"/api/v1/enrollmentrequests/{name}", body, format="json")
    assert changed.status_code == 400 and changed.json()["message"] == "spec is immutable"


def test_a_re_enrolling_device_is_awaiting_reconnect(api):
    from devices.models import Device

    name, _ = new_request(api, knownRenderedVersion="7")
    approve(api, name)
    device = Device.objects.get(name=name)
    assert device.annotations["device-controller/awaitingReconnect"] == "true"
    assert device.status["summary"]["status"] == "AwaitingReconnect"


def test_enrollment_csrs_are_auto_approved_and_feed_the_enrollment_config(api, pki_dir):
    key = new_key()
    created = api.post("/api/v1/certificatesigningrequests",
                       csr_body("bootstrap", csr_pem(key, "bootstrap"), expirationSeconds=86400),
                       format="json")
    assert created.status_code == 201, created.json()
    csr = created.json()
    assert_valid(csr, "CertificateSigningRequest")
    assert csr["spec"]["signerName"] == pki.SIGNER_ENROLLMENT
    assert csr["spec"]["username"] == "admin"
    cert = x509.load_pem_x509_certificate(base64.b64decode(csr["status"]["certificate"]))
    assert pki.common_name(cert) == "client-enrollment-bootstrap"
    assert pki.certificate_extension(cert, pki.OID_SIGNER) == pki.SIGNER_ENROLLMENT
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 1

    config = api.get("/api/v1/enrollmentconfig", {"csr": "bootstrap"}).json()
    assert_valid(config, "EnrollmentConfig")
    service = config["enrollment-service"]
    assert service["authentication"] == {"client-certificate-data": csr["status"]["certificate"],
                                         "client-key-data": ""}
    assert service["service"]["server"].endswith(":7443")
    bundle = base64.b64decode(service["service"]["certificate-authority-data"])
    assert bundle == (pki_dir / "ca-bundle.crt").read_bytes()
    assert len(x509.load_pem_x509_certificates(bundle)) == 2
    assert api.get("/api/v1/enrollmentconfig", {"csr": "nope"}).status_code == 404
    plain = api.get("/api/v1/enrollmentconfig").json()["enrollment-service"]
    assert plain["authentication"]["client-certificate-data"] == ""
    for path in pki_dir.glob("*.key"):
        assert path.stat().st_mode & 0o777 == 0o600


def test_signers_are_checked_and_manual_approval_or_denial_is_final(api):
    key = new_key()
    for signer, message in (("ca", "deprecated"), ("flightctl.io/device-enrollment",
                                                   "EnrollmentRequest"), ("nope", "unknown")):
        refused = api.post("/api/v1/certificatesigningrequests",
                           csr_body("x", csr_pem(key, "x"), signer=signer), format="json")
        assert refused.status_code == 400 and message in refused.json()["message"]
    renewal = api.post("/api/v1/certificatesigningrequests",
                       csr_body("r", csr_pem(key, "r"), signer=pki.SIGNER_DEVICE_RENEWAL),
                       format="json")
    assert renewal.status_code == 401

    server = api.post("/api/v1/certificatesigningrequests",
                      csr_body("svc-a", csr_pem(key, "svc-a"), signer=pki.SIGNER_SERVER_SVC,
                               usages=["serverAuth"]), format="json").json()
    assert server["status"] == {"conditions": []}  # pending: a human decides
    server["status"]["conditions"] = [{"type": "Approved", "status": "True", "reason": "Approved",
                                       "message": "ok", "lastTransitionTime":
                                       "2025-01-01T00:00:00Z"}]
    approved = api.put("/api/v1/certificatesigningrequests/svc-a/approval", server,
                       format="json")
    assert approved.status_code == 200 and approved.json()["status"]["certificate"]
    assert api.put("/api/v1/certificatesigningrequests/svc-a/approval", server,
                   format="json").status_code == 409

    pending = api.post("/api/v1/certificatesigningrequests",
                       csr_body("svc-b", csr_pem(key, "svc-b"), signer=pki.SIGNER_SERVER_SVC,
                                usages=["serverAuth"]), format="json").json()
    pending["status"]["conditions"] = [{"type": "Denied", "status": "True", "reason": "Denied",
                                        "message": "no", "lastTransitionTime":
                                        "2025-01-01T00:00:00Z"}]
    assert api.put("/api/v1/certificatesigningrequests/svc-b/approval", pending,
                   format="json").status_code == 200
    twice = api.put("/api/v1/certificatesigningrequests/svc-b/approval", pending, format="json")
    assert twice.status_code == 409
    assert twice.json()["message"] == "The request has already been denied"
    assert "certificate" not in api.get("/api/v1/certificatesigningrequests/svc-b").json()[
        "status"]


def test_an_operator_root_ca_from_files_signs_the_client_signer(tmp_path):
    operator = pki.CertificateAuthority(tmp_path / "operator", "ops-root")
    loaded = pki.PKI(tmp_path / "data", str(operator.cert_path), str(operator.key_path))
    assert loaded.root.cert == operator.cert
    loaded.client_signer.cert.verify_directly_issued_by(operator.cert)
    assert not (tmp_path / "data" / "pki" / "ca.key").exists()
    assert (tmp_path / "data" / "pki" / "client-signer.key").stat().st_mode & 0o777 == 0o600
    cert_path, _ = loaded.server_certificate("server", ["flightctl.example.com"])
    server = x509.load_pem_x509_certificate(cert_path.read_bytes())
    server.verify_directly_issued_by(operator.cert)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "flightctl.example.com" in names.get_values_for_type(x509.DNSName)
