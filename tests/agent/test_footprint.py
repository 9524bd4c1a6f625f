"""An enrolled device's agent runs without ``cryptography`` (docs/scale.md, "Sixth round: the
agent's footprint"): it reads its certificate itself and signs CSRs in a child process.

The end-to-end tests check the running agent's memory map as well
(``AgentProcess.maps_library``, in the enrollment and renewal tests)."""

from __future__ import annotations

import json
import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from flightctl_agent import certinfo, cli, identity, protocol
from flightctl_agent.client import AgentClient
from flightctl_agent.config import ServiceConfig

CA_KEY = ec.generate_private_key(ec.SECP256R1())


def issue(public_key, not_after: datetime, serial: int | None = None) -> bytes:
    now = datetime.now(UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device:test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(public_key).serial_number(serial or x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(not_after)
            .sign(CA_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP256R1()),
                                 rsa.generate_private_key(65537, 2048)],
                         ids=["ecdsa-p256", "rsa-2048"])
@pytest.mark.parametrize("years", [1, 40])  # UTCTime until 2049, GeneralizedTime after
def test_the_certificate_facts_the_agent_reads_are_cryptographys(key, years):
    pem = issue(key.public_key(), datetime.now(UTC) + timedelta(days=365 * years), serial=None)
    ours, theirs = certinfo.load_pem(pem), x509.load_pem_x509_certificate(pem)
    assert ours.serial_number == theirs.serial_number
    assert ours.not_valid_before_utc == theirs.not_valid_before_utc
    assert ours.not_valid_after_utc == theirs.not_valid_after_utc
    assert protocol.device_name_of_bytes(ours.public_key_bytes) == protocol.device_name(
        key.public_key())
    assert protocol.cert_serial_text(ours) == protocol.cert_serial_text(theirs)


@pytest.mark.parametrize("body", [b"", b"!!", b"MAMCAQE="])
def test_what_is_not_a_certificate_is_refused(body):
    pem = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError):
        certinfo.load_pem(pem)
    with pytest.raises(ValueError):
        certinfo.load_pem(b"")


def test_a_file_identity_makes_its_key_in_a_child_and_then_takes_its_name_from_the_certificate(
        tmp_path):
    first = identity.FileIdentity(tmp_path)
    first.initialize()
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(first.key_path.read_bytes(), password=None)
    assert first.name == protocol.device_name(key.public_key())
    csr = first.enrollment_csr()
    assert protocol.csr_common_name(csr.encode()) == first.name
    again = identity.FileIdentity(tmp_path)
    again.initialize()  # a restart while waiting for approval: same key, same CSR
    assert (again.name, again.enrollment_csr()) == (first.name, csr)

    again.store_certificate(issue(key.public_key(), datetime.now(UTC) + timedelta(days=365)))
    assert not again.csr_path.exists()
    enrolled = identity.FileIdentity(tmp_path)
    enrolled.initialize()
    assert enrolled.name == first.name
    renewal = x509.load_pem_x509_csr(enrolled.renewal_csr())
    assert renewal.public_key() == key.public_key() and renewal.is_signature_valid


def test_a_certificate_for_another_key_or_a_tpm_key_file_is_refused(tmp_path):
    other = ec.generate_private_key(ec.SECP256R1())
    device = identity.FileIdentity(tmp_path)
    device.initialize()
    device.store_certificate(issue(other.public_key(), datetime.now(UTC) + timedelta(days=1)))
    with pytest.raises(identity.IdentityUnavailable, match="is not the key of"):
        identity.FileIdentity(tmp_path).initialize()
    device.key_path.write_text("-----BEGIN TSS2 PRIVATE KEY-----\nMAA=\n"
                               "-----END TSS2 PRIVATE KEY-----\n")
    with pytest.raises(identity.IdentityUnavailable, match="is tpm.enabled missing"):
        identity.FileIdentity(tmp_path).initialize()
    device.cert_path.unlink()  # and before enrollment, the child says so
    with pytest.raises(identity.IdentityUnavailable, match="is tpm.enabled missing"):
        identity.FileIdentity(tmp_path).initialize()


# What an enrolled agent runs at start and in its loop, short of the network: its modules,
# its identity, the certificate facts it reports and schedules renewal by.
ENROLLED_START = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
import flightctl_agent.cli, flightctl_agent.agent
from flightctl_agent import certs, config, identity, metrics, systeminfo
paths = config.load(root=sys.argv[1]).paths
device = identity.FileIdentity(paths.certs_dir)
device.initialize()
cert = device.certificate()
certs.CertManager(None).due(cert, datetime.now(UTC))
metrics.certificate_loaded(cert)
info = systeminfo.collect(paths, ["managementCertSerial", "managementCertNotAfter"], [], 5,
                          cert=cert)
assert info["managementCertSerial"] and info["managementCertNotAfter"]
heavy = {m.split(".")[0] for m in sys.modules} & {"cryptography", "click", "tpm2_pytss"}
print(json.dumps([device.name, sorted(heavy)]))
"""


def test_an_enrolled_agent_starts_without_importing_cryptography_or_click(tmp_path):
    device = identity.FileIdentity(tmp_path / "var/lib/flightctl/certs")
    device.initialize()
    key = serialization.load_pem_private_key(device.key_path.read_bytes(), password=None)
    device.store_certificate(issue(key.public_key(), datetime.now(UTC) + timedelta(days=365)))
    done = subprocess.run([sys.executable, "-c", ENROLLED_START, str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [device.name, []]


@pytest.mark.parametrize(("args", "expected"), [
    ([], (None, None)),
    (["--config", "/etc/x.yaml"], ("/etc/x.yaml", None)),
    (["--config=/etc/x.yaml", "--root", "/srv/d"], ("/etc/x.yaml", "/srv/d")),
    (["version"], None), (["--help"], None), (["--config"], None),
    (["--root", "/srv/d", "simulate", "--devices", "2"], None), (["--config", "/"], None)])
def test_only_running_the_agent_bypasses_click(args, expected):
    assert cli._agent_options(args) == expected


def test_the_client_trusts_the_service_ca_alone_and_the_system_cas_only_without_one(tmp_path):
    ca = issue(CA_KEY.public_key(), datetime.now(UTC) + timedelta(days=1))
    with_ca = AgentClient(ServiceConfig(ca_data=ca), workdir=tmp_path)
    without = AgentClient(ServiceConfig(), workdir=tmp_path)
    try:
        def trusted(client):
            adapter = client.session.get_adapter("https://service")
            return adapter.poolmanager.connection_pool_kw["ssl_context"].cert_store_stats()[
                "x509"]
        assert trusted(with_ca) == 1
        assert trusted(without) == ssl.create_default_context().cert_store_stats()["x509"]
    finally:
        with_ca.close()
        without.close()
