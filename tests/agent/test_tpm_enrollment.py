"""A device whose identity key lives in a TPM (swtpm) enrolls, proves its TPM to the service,
and then talks to the service over mutual TLS whose handshakes the TPM signs."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from flightctl_agent import protocol
from tpm2_pytss import TPMA_OBJECT
from tpm2_pytss.tsskey import TSSPrivKey

from tests.net import wait_for
from tests.tpm_support import SoftwareTPM

SOFTWARE_KEY = re.compile(rb"-----BEGIN (EC |RSA |ENCRYPTED )?PRIVATE KEY-----")
RENEW_OFTEN = {"FLIGHTCTL_TEST_CERT_MANAGER_SYNC_INTERVAL": "5",
               "FLIGHTCTL_TEST_MGMT_CERT_RENEW_BEFORE_SECONDS": str(400 * 86400)}


@pytest.fixture
def software_tpm(tpm_manufacturer, tmp_path):
    """A swtpm whose EK certificate the server's trusted manufacturer issued."""
    tpm = SoftwareTPM(tmp_path / "swtpm", tpm_manufacturer)
    yield tpm
    tpm.stop()


def tpm_verified(server, name: str) -> dict:
    er = server.get(f"/api/v1/enrollmentrequests/{name}").json()
    for condition in (er.get("status") or {}).get("conditions") or []:
        if condition["type"] == "TPMVerified" and condition["status"] == "True":
            return er
    return {}


def files_under(root):
    return (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_device_with_a_tpm_key_enrolls_verified_and_applies_its_spec_over_tpm_signed_tls(
        software_tpm, make_agent, server, render):
    # Renewal is due at every check: renewal CSRs are signed in the TPM too.
    agent = make_agent(env=RENEW_OFTEN, extra_config={
        "tpm": {"enabled": True, "device-path": software_tpm.tcti},
        "system-info": ["hostname", "kernel", "distroName", "tpmVendorInfo"]})

    # While the request waits for approval the agent answers the credential challenge.
    name = agent.name
    er = wait_for(lambda: tpm_verified(server, name), 60, what="TPMVerified=True")
    condition = next(c for c in er["status"]["conditions"] if c["type"] == "TPMVerified")
    assert condition["reason"] == "TPMChallengeSucceeded"
    assert er["spec"]["deviceStatus"]["systemInfo"]["tpmVendorInfo"] == "tpm-vendor-available"
    agent.enroll(labels={"site": "lab"})
    integrity = agent.status()["integrity"]
    assert integrity["status"] == "Verified"
    assert integrity["tpm"]["status"] == integrity["deviceIdentity"]["status"] == "Verified"

    # The key is the TPM-wrapped LDevID in the standard TSS2 format, generated in the TPM and
    # bound to it; the certificate and the device name are for that key.
    key_file = agent.path("/var/lib/flightctl/certs/agent.key")
    pem = key_file.read_bytes()
    assert pem.startswith(b"-----BEGIN TSS2 PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    area = TSSPrivKey.from_pem(pem).public.publicArea
    for attribute in (TPMA_OBJECT.FIXEDTPM, TPMA_OBJECT.FIXEDPARENT,
                      TPMA_OBJECT.SENSITIVEDATAORIGIN):
        assert area.objectAttributes & attribute
    point = area.unique.ecc
    tpm_public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big"),
        ec.SECP256R1()).public_key()
    cert = x509.load_pem_x509_certificate(
        agent.path("/var/lib/flightctl/certs/agent.crt").read_bytes())
    assert cert.public_key() == tpm_public and protocol.device_name(tpm_public) == name
    assert agent.path("/var/lib/flightctl/tpm-blob.yaml").exists()
    assert [p for p in files_under(agent.root) if SOFTWARE_KEY.search(p.read_bytes())] == []

    # Everything after enrollment goes over mutual TLS with that key: the spec long-poll, the
    # status updates. Its handshakes are signed in the TPM.
    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/motd", "content": "Managed with a TPM identity."}]}]})
    status = agent.wait_rendered_version(version)
    assert agent.path("/etc/motd").read_text() == "Managed with a TPM identity."
    updating = next(c for c in status["conditions"] if c["type"] == "Updating")
    assert updating["message"] == f"Updated to desired renderedVersion: {version}"
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate")
    wait_for(lambda: "Management certificate renewed" in agent.log(), 60,
             what="a certificate renewal")
    log = agent.log()
    assert "Using TPM-based identity provider" in log
    assert "TLS handshake signature made in the TPM" in log
    assert "TLS signature in the TPM failed" not in log

    # Killed without flushing its TPM objects (swtpm has no resource manager), the agent
    # restarts from the key file alone and carries on.
    agent.kill(signal.SIGKILL)
    wait_for(lambda: agent.starts >= 2, 30, what="the agent's restart")
    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/motd", "content": "Still managed after a restart."}]}]})
    agent.wait_rendered_version(version)
    assert agent.path("/etc/motd").read_text() == "Still managed after a restart."

    # The key file is usable by standard TPM tooling (the tpm2-openssl provider derives the
    # same parent SRK): once the agent lets go of the TPM, OpenSSL signs with it there.
    agent.stop()
    digest = hashlib.sha256(b"signed by the device's TPM").digest()
    signed = subprocess.run(
        ["openssl", "pkeyutl", "-provider", "tpm2", "-provider", "default", "-sign",
         "-inkey", str(key_file)],
        input=digest, capture_output=True, timeout=60,
        env={**os.environ, "TPM2OPENSSL_TCTI": software_tpm.tcti})
    assert signed.returncode == 0, (f"tpm2-openssl could not use the key (install it with "
                                    f"scripts/install-test-deps.sh): {signed.stderr.decode()}")
    cert.public_key().verify(signed.stdout, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
