"""Approving enrollment and certificate requests, enrollment configs, decommissioning."""

from __future__ import annotations

import base64
import subprocess
import time

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.cli.conftest import FLIGHTCTL, table


def csr_pem(common_name: str, key=None) -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def enrollment_request(labels: dict | None = None) -> tuple[str, dict]:
    """A new key's request, named after the key as an agent names it: ``(name, manifest)``."""
    from flightctl import pki

    key = ec.generate_private_key(ec.SECP256R1())
    name = pki.device_fingerprints(key.public_key())[0]
    spec = {"csr": csr_pem(name, key).decode()}
    if labels:
        spec["labels"] = labels
    return name, {"apiVersion": "flightctl.io/v1beta1", "kind": "EnrollmentRequest",
                  "metadata": {"name": name}, "spec": spec}


def test_approve_an_enrollment_request_with_labels(server, cli, tmp_path):
    name, request = enrollment_request({"proposed": "y"})
    manifest = tmp_path / "er.yaml"
    manifest.write_text(yaml.safe_dump(request))
    cli.ok("apply", "-f", manifest)
    out = cli.ok("approve", f"er/{name}", "-l", "region=eu", "-l", "tier=gold")
    assert "approved" in out
    er = server.api("GET", f"enrollmentrequests/{name}").json()
    assert er["status"]["approval"]["approved"] is True
    assert {"region": "eu", "tier": "gold"}.items() <= er["status"]["approval"]["labels"].items()
    device = server.api("GET", f"devices/{name}").json()
    assert device["metadata"]["labels"] == {"proposed": "y", "region": "eu", "tier": "gold"}
    row = table(cli.ok("get", f"er/{name}"))[0]
    assert row["APPROVAL"] == "Approved" and row["APPROVER"] != "<none>"
    assert "region=eu" in row["APPROVED LABELS"] and "tier=gold" in row["APPROVED LABELS"]
    # Approving twice is refused by the server, reported in one line.
    again = cli("approve", f"er/{name}")
    assert again.code != 0 and len(again.err.strip().splitlines()) == 1

    # --replace-labels: only the approval's labels, not the ones the agent proposed.
    replace, request = enrollment_request({"proposed": "y"})
    manifest.write_text(yaml.safe_dump(request))
    cli.ok("apply", "-f", manifest)
    cli.ok("approve", f"enrollmentrequest/{replace}", "-l", "only=this", "--replace-labels")
    labels = server.api("GET", f"devices/{replace}").json()["metadata"]["labels"]
    assert labels == {"only": "this"}

    cli.ok("delete", "devices", name, replace)
    cli.ok("delete", "er", name, replace)


def test_approve_what_get_o_name_lists(server, cli, tmp_path):
    """``-o name`` prints kind/name lines, which approve takes as they are, in a real shell."""
    requests = sorted(enrollment_request() for _ in range(2))
    names = [name for name, _ in requests]
    for name, request in requests:
        manifest = tmp_path / f"{name}.yaml"
        manifest.write_text(yaml.safe_dump(request))
        cli.ok("apply", "-f", manifest)
    listing = f"--field-selector 'metadata.name in ({','.join(names)})'"
    assert cli.ok("get", "er", "--field-selector", f"metadata.name in ({','.join(names)})",
                  "-o", "name").split() == [f"enrollmentrequest/{n}" for n in names]
    shell = subprocess.run(["bash", "-c", f"flightctl approve $(flightctl get er {listing} "
                            "-o name) -l site=shell"], capture_output=True, text=True,
                           env={**cli.env, "PATH": f"{FLIGHTCTL.parent}:{cli.env['PATH']}"},
                           timeout=120)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [f'Enrollment request "{n}" approved' for n in names]
    for name in names:
        labels = server.api("GET", f"devices/{name}").json()["metadata"]["labels"]
        assert labels == {"site": "shell"}
    cli.ok("delete", "devices", *names)
    cli.ok("delete", "er", *names)


def svc_csr(name: str) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": base64.b64encode(csr_pem(f"svc-{name}")).decode(),
                     "signerName": "flightctl.io/server-svc",
                     "usages": ["clientAuth", "CA:false"], "expirationSeconds": 3600}}


def test_approve_and_deny_certificate_signing_requests(server, cli, tmp_path):
    manifest = tmp_path / "csrs.yaml"
    manifest.write_text(yaml.safe_dump_all([svc_csr("cli-csr-yes"), svc_csr("cli-csr-no")]))
    cli.ok("apply", "-f", manifest)
    cli.ok("approve", "csr/cli-csr-yes")
    cli.ok("deny", "csr/cli-csr-no")
    rows = {r["NAME"]: r for r in table(cli.ok("get", "csr", "cli-csr-yes", "cli-csr-no"))}
    assert rows["cli-csr-yes"]["CONDITION"].startswith("Approved")
    assert rows["cli-csr-no"]["CONDITION"] == "Denied"
    conditions = server.api("GET", "certificatesigningrequests/cli-csr-no").json()["status"][
        "conditions"]
    assert any(c["type"] == "Denied" and c["status"] == "True" for c in conditions)
    refused = cli("approve", "csr/cli-csr-no")
    assert refused.code != 0 and "already denied" in refused.err
    cli.ok("delete", "csr", "cli-csr-yes", "cli-csr-no")


def test_certificate_request_writes_a_ready_agent_config(server, cli, tmp_path):
    out_dir = tmp_path / "agent"
    cli.ok("certificate", "request", "--signer", "enrollment", "-n", "client-enrollment-cli",
           "-x", "30d", "-d", out_dir)
    config = yaml.safe_load((out_dir / "config.yaml").read_text())
    service = config["enrollment-service"]
    cert = base64.b64decode(service["authentication"]["client-certificate-data"])
    key = base64.b64decode(service["authentication"]["client-key-data"])
    assert cert.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in key
    assert service["service"]["server"].startswith("https://")
    assert (out_dir / "config.yaml").stat().st_mode & 0o777 == 0o600

    ref_dir = tmp_path / "agent-ref"
    cli.ok("certificate", "request", "-n", "client-enrollment-cli2", "-o", "reference",
           "-d", ref_dir)
    ref = yaml.safe_load((ref_dir / "config.yaml").read_text())["enrollment-service"]
    assert ref["authentication"]["client-certificate"].endswith("client-enrollment.crt")
    assert (ref_dir / "client-enrollment.key").stat().st_mode & 0o777 == 0o600

    printed = yaml.safe_load(cli.ok("enrollmentconfig", "client-enrollment-cli"))
    assert printed["enrollment-service"]["service"]["server"] == service["service"]["server"]
    cli.ok("delete", "csr", "client-enrollment-cli", "client-enrollment-cli2")


def test_decommission_a_device(server, cli):
    server.api("PUT", "devices/cli-decom", json={
        "apiVersion": "flightctl.io/v1beta1", "kind": "Device",
        "metadata": {"name": "cli-decom", "labels": {"a": "b"}}})
    out = cli.ok("decommission", "device/cli-decom")
    assert "decommission" in out
    device = server.api("GET", "devices/cli-decom").json()
    assert device["spec"]["decommissioning"] == {"target": "Unenroll"}
    again = cli("decommission", "dev/cli-decom")
    assert again.code != 0 and len(again.err.strip().splitlines()) == 1
    cli.ok("delete", "device/cli-decom")


def test_get_rendered_and_resume_reach_their_endpoints(server, cli):
    """``get device/X --rendered`` shows what the agent receives (once the server's workers
    rendered it); ``resume`` by name or ``--all`` is accepted (nothing is paused here: the
    pause itself is tested in tests/test_device_extras.py)."""
    server.api("PUT", "devices/cli-rendered", json={
        "apiVersion": "flightctl.io/v1beta1", "kind": "Device",
        "metadata": {"name": "cli-rendered"},
        "spec": {"config": [{"name": "motd", "inline": [{"path": "/etc/motd",
                                                          "content": "hi"}]}]}})
    deadline = time.monotonic() + 60
    while server.api("GET", "devices/cli-rendered/rendered").status_code != 200:
        assert time.monotonic() < deadline, "the device was never rendered"
        time.sleep(0.5)
    rendered = yaml.safe_load(cli.ok("get", "device/cli-rendered", "--rendered"))
    assert rendered["spec"]["config"][0]["inline"][0]["path"] == "/etc/motd"
    assert cli.ok("resume", "device/cli-rendered").strip() == "Resumed 0 device(s)"
    assert cli.ok("resume", "devices", "--all").strip() == "Resumed 0 device(s)"
    cli.ok("delete", "device/cli-rendered")
