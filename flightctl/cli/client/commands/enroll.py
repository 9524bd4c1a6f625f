"""Approval and device-lifecycle commands: ``approve``, ``deny``, ``decommission``,
``resume``, ``certificate request`` and ``enrollmentconfig``.

An EnrollmentRequest is approved with ``PUT /enrollmentrequests/{n}/approval`` (labels to give
the new device); a CertificateSigningRequest by writing it back with an ``Approved`` (or
``Denied``) condition to ``PUT /certificatesigningrequests/{n}/approval``.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import yaml

from flightctl.cli.client import output
from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import CliError
from flightctl.cli.client.kinds import parse_resource_args, parse_single

LABEL_RE = re.compile(r"^([^=\s]+)=(.*)$")


def _labels(pairs: tuple[str, ...]) -> dict:
    labels = {}
    for pair in pairs:
        match = LABEL_RE.match(pair)
        if not match:
            raise CliError(f'label "{pair}" is not KEY=VALUE')
        labels[match.group(1)] = match.group(2)
    return labels


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _set_csr_condition(env: Env, name: str, type_: str) -> dict:
    """Write the CSR back with an Approved/Denied condition (the reference's approval)."""
    client = env.client
    csr = client.get_json(f"certificatesigningrequests/{name}")
    status = csr.setdefault("status", {}) or {}
    csr["status"] = status
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != type_]
    other = "Denied" if type_ == "Approved" else "Approved"
    if any(c.get("type") == other and c.get("status") == "True" for c in conditions):
        raise CliError(f'certificate signing request "{name}" is already {other.lower()}')
    conditions.append({"type": type_, "status": "True", "reason": type_,
                       "message": f"{type_} by flightctl", "lastTransitionTime": _now()})
    status["conditions"] = conditions
    return client.send_json("PUT", f"certificatesigningrequests/{name}/approval", csr)


@cli.command()
@click.argument("resources", nargs=-1, required=True, metavar="er/NAME | csr/NAME ...")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Label for the enrolled device (repeatable; enrollment requests only).")
@click.option("--replace-labels", is_flag=True,
              help="Give the device only these labels, not the ones its agent proposed.")
@common_options
def approve(env: Env, resources, labels, replace_labels):
    """Approve enrollment requests (their devices are created) or certificate requests, e.g.
    every waiting device: flightctl approve $(flightctl get er -o name)."""
    targets = [parse_single(resource, ("enrollmentrequests", "certificatesigningrequests"),
                            "approve") for resource in resources]
    if (labels or replace_labels) and any(k.plural != "enrollmentrequests" for k, _ in targets):
        raise CliError("--label and --replace-labels apply to enrollment requests only")
    body = {"approved": True, "labels": _labels(labels), "replaceLabels": replace_labels}
    for kind, name in targets:
        if kind.plural == "enrollmentrequests":
            env.client.send_json("PUT", f"enrollmentrequests/{name}/approval", body)
            click.echo(f'Enrollment request "{name}" approved')
        else:
            _set_csr_condition(env, name, "Approved")
            click.echo(f'Certificate signing request "{name}" approved')


@cli.command()
@click.argument("resource", metavar="csr/NAME")
@common_options
def deny(env: Env, resource):
    """Deny a certificate signing request."""
    _, name = parse_single(resource, ("certificatesigningrequests",), "deny")
    _set_csr_condition(env, name, "Denied")
    click.echo(f'Certificate signing request "{name}" denied')


@cli.command()
@click.argument("resource", metavar="device/NAME")
@click.option("-t", "--target", type=click.Choice(["unenroll"], case_sensitive=False),
              default="unenroll", show_default=True, help="What the device does.")
@common_options
def decommission(env: Env, resource, target):
    """Decommission a device: its agent unenrolls, then delete the device."""
    _, name = parse_single(resource, ("devices",), "decommission")
    env.client.send_json("PUT", f"devices/{name}/decommission", {"target": "Unenroll"})
    click.echo(f'Device "{name}" is being decommissioned')


@cli.command()
@click.argument("resources", nargs=-1, metavar="device/NAME | devices")
@click.option("-l", "--selector", "label_selector", help="Resume the devices with these labels.")
@click.option("--field-selector", help="Resume the devices matching these fields.")
@click.option("--all", "all_", is_flag=True, help="Resume every conflict-paused device.")
@common_options
def resume(env: Env, resources, label_selector, field_selector, all_):
    """Resume devices paused because of a conflict after a server restore."""
    kind, names = parse_resource_args(resources or ("devices",))
    if kind.plural != "devices":
        raise CliError("resume works on devices only")
    if names and (label_selector or field_selector or all_):
        raise CliError("name devices or use selectors/--all, not both")
    if not names and not (label_selector or field_selector or all_):
        raise CliError("name a device, or pass -l, --field-selector or --all")
    # The API wants at least one selector; an empty label selector selects every device.
    body: dict = {"labelSelector": ""} if all_ else {}
    if names:
        body["fieldSelector"] = f"metadata.name in ({','.join(names)})"
    if label_selector:
        body["labelSelector"] = label_selector
    if field_selector:
        body["fieldSelector"] = field_selector
    answer = env.client.send_json("POST", "deviceactions/resume", body) or {}
    click.echo(f"Resumed {answer.get('resumedDevices', 0)} device(s)")


# -- enrollment certificates and agent configs --------------------------------------------------

def parse_expiration(text: str) -> int:
    """``365d``, ``12h``, ``30m``, ``90s`` or plain seconds → seconds."""
    match = re.fullmatch(r"(\d+)([dhms]?)", text.strip())
    if not match or int(match.group(1)) <= 0:
        raise CliError(f'expiration "{text}" is not a duration like 365d, 12h or 3600')
    return int(match.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[match.group(2)]


def _key_and_csr(name: str, password: bytes | None) -> tuple[bytes, bytes]:
    # cryptography only for this command: the rest of the CLI needs no crypto library.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                encryption)
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _wait_for_certificate(env: Env, name: str, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        csr = env.client.get_json(f"certificatesigningrequests/{name}")
        for type_ in ("Denied", "Failed"):
            cond = output.condition(csr, type_)
            if cond and cond.get("status") == "True":
                raise CliError(f'certificate signing request "{name}" {type_.lower()}: '
                               f"{cond.get('message') or cond.get('reason')}")
        certificate = output.dig(csr, "status", "certificate")
        if certificate:
            return base64.b64decode(certificate)
        if time.monotonic() >= deadline:
            raise CliError(f'certificate signing request "{name}" was not signed within '
                           f"{timeout:g}s; approve it with 'flightctl approve csr/{name}'")
        time.sleep(1)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    os.chmod(path, mode)


@cli.group()
def certificate():
    """Request certificates from the service."""


@certificate.command("request")
@click.option("-s", "--signer", default="enrollment", show_default=True,
              help="Signer: enrollment (agent bootstrap certificates).")
@click.option("-n", "--name", help="Name of the CSR (default client-enrollment-<random>).")
@click.option("-x", "--expiration", default="365d", show_default=True,
              help="Certificate lifetime, e.g. 365d or 12h.")
@click.option("-o", "--output", "mode", type=click.Choice(["embedded", "reference"]),
              default="embedded", show_default=True,
              help="embedded: certificates inside config.yaml; reference: separate files.")
@click.option("-d", "--output-dir", type=click.Path(file_okay=False), default=".",
              show_default=True, help="Where to write config.yaml (and the certificate files).")
@click.option("-e", "--encrypt", is_flag=True,
              help="Encrypt the private key with the password in $FCPASS.")
@click.option("--wait", type=click.FloatRange(min=0), default=60, show_default=True,
              help="Seconds to wait for the certificate.")
@common_options
def certificate_request(env: Env, signer, name, expiration, mode, output_dir, encrypt, wait):
    """Get an enrollment certificate and write a ready agent config.yaml."""
    signer_name = "flightctl.io/enrollment" if signer in ("enrollment", "flightctl.io/enrollment") \
        else signer
    name = name or f"client-enrollment-{secrets.token_hex(4)}"
    password = None
    if encrypt:
        password = os.environ.get("FCPASS", "").encode()
        if not password:
            raise CliError("--encrypt needs the password in the FCPASS environment variable")
    seconds = parse_expiration(expiration)
    key_pem, csr_pem = _key_and_csr(name, password)
    csr = {"apiVersion": "flightctl.io/v1beta1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name},
           "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": signer_name,
                    "usages": ["clientAuth", "CA:false"], "expirationSeconds": seconds}}
    env.client.send_json("POST", "certificatesigningrequests", csr)
    cert_pem = _wait_for_certificate(env, name, wait)
    config = env.client.get_json("enrollmentconfig", params={"csr": name}) or {}
    service = config.get("enrollment-service") or {}
    auth = service.setdefault("authentication", {})
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    if mode == "embedded":
        auth["client-certificate-data"] = base64.b64encode(cert_pem).decode()
        auth["client-key-data"] = base64.b64encode(key_pem).decode()
    else:
        ca_data = output.dig(service, "service", "certificate-authority-data")
        if ca_data:
            _write(directory / "ca.crt", base64.b64decode(ca_data))
            service["service"].pop("certificate-authority-data")
            service["service"]["certificate-authority"] = "/etc/flightctl/certs/ca.crt"
        _write(directory / "client-enrollment.crt", cert_pem)
        _write(directory / "client-enrollment.key", key_pem, 0o600)
        auth.pop("client-certificate-data", None)
        auth.pop("client-key-data", None)
        auth["client-certificate"] = "/var/lib/flightctl/certs/client-enrollment.crt"
        auth["client-key"] = "/var/lib/flightctl/certs/client-enrollment.key"
    _write(directory / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode(), 0o600)
    click.echo(f"Wrote {directory / 'config.yaml'} for CSR {name}")
    if mode == "reference":
        click.echo("Copy ca.crt to /etc/flightctl/certs/ and client-enrollment.{crt,key} to "
                   "/var/lib/flightctl/certs/ on the device.")


@cli.command("enrollmentconfig")
@click.argument("csr_name", required=False)
@click.option("-p", "--private-key", type=click.Path(dir_okay=False),
              help="Embed this private key (PEM) as client-key-data.")
@common_options
def enrollmentconfig(env: Env, csr_name, private_key):
    """Print the agent enrollment config (for the certificate of CSR_NAME)."""
    config = env.client.get_json("enrollmentconfig",
                                 params={"csr": csr_name} if csr_name else None) or {}
    if private_key:
        try:
            key = Path(private_key).read_bytes()
        except OSError as exc:
            raise CliError(f"{private_key}: cannot read: {exc.strerror}") from None
        auth = config.setdefault("enrollment-service", {}).setdefault("authentication", {})
        auth["client-key-data"] = base64.b64encode(key).decode()
    output.emit(config, "yaml")
