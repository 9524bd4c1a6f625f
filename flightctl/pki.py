"""The server's certificate authority, its signers and TLS certificates (ECDSA P-256).

Layout (service.md §6.5), all in ``<data dir>/pki`` unless ``ca_cert_file``/``ca_key_file``
name an existing root:

* ``ca.crt``/``ca.key``: the self-signed root (10 years). It signs the servers' TLS
  certificates (``server.crt``) and server-service certificates.
* ``client-signer.crt``/``.key``: an intermediate CA (10 years, path length 0) under the root
  that signs every client certificate: enrollment certificates, device management certificates
  and their renewals. Each client certificate names the signer that issued it in the
  ``1.3.6.1.4.1.99999.1.1`` extension, its organization in ``.1.2`` and, for devices, the device
  fingerprint in ``.1.3`` — the agent API authorizes on these.
* ``ca-bundle.crt``: root + client signer, what agents are given to verify the server and what
  the agent API trusts for client certificates.

Private keys are written 0600 and never leave this module except as paths handed to the TLS
servers.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=365)
CLIENT_LIFETIME = datetime.timedelta(days=365)

OID_SIGNER = ObjectIdentifier("1.3.6.1.4.1.99999.1.1")
OID_ORG_ID = ObjectIdentifier("1.3.6.1.4.1.99999.1.2")
OID_FINGERPRINT = ObjectIdentifier("1.3.6.1.4.1.99999.1.3")

SIGNER_ENROLLMENT = "flightctl.io/enrollment"
SIGNER_DEVICE_ENROLLMENT = "flightctl.io/device-enrollment"
SIGNER_DEVICE_RENEWAL = "flightctl.io/device-management-renewal"
SIGNER_DEVICE_SVC_CLIENT = "flightctl.io/device-svc-client"
SIGNER_SERVER_SVC = "flightctl.io/server-svc"
DEVICE_CN_PREFIX = "device:"
ENROLLMENT_CN = "client-enrollment"


def write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically with mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CertificateAuthority:
    """A signing key and its certificate, loaded from or created in a directory.

    With ``parent`` the new CA is an intermediate signed by it (path length 0); ``cert_path``
    and ``key_path`` override the file names (a root configured by the operator).
    """

    def __init__(self, directory: Path, common_name: str = "flightctl-ca", *, basename="ca",
                 parent: CertificateAuthority | None = None, cert_path=None, key_path=None):
        self.directory = Path(directory)
        self.cert_path = Path(cert_path) if cert_path else self.directory / f"{basename}.crt"
        self.key_path = Path(key_path) if key_path else self.directory / f"{basename}.key"
        if self.cert_path.exists() and self.key_path.exists():
            self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        else:
            self.key = new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            issuer_key = parent.key if parent else self.key
            builder = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(parent.cert.subject if parent else name)
                .public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(minutes=5))
                .not_valid_after(_now() + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0 if parent else None),
                               critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                    critical=False,
                )
            )
            if parent:
                builder = builder.add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                    critical=False,
                )
            self.cert = builder.sign(issuer_key, hashes.SHA256())
            write_private(self.key_path, key_pem(self.key))
            write_public(self.cert_path, cert_pem(self.cert))

    def issue_server_certificate(self, public_key, common_name: str, sans: list[str]):
        names: list[x509.GeneralName] = []
        for san in dict.fromkeys(sans):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + SERVER_LIFETIME)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )


def default_sans(extra: list[str]) -> list[str]:
    return ["localhost", "127.0.0.1", "::1", socket.gethostname(), *extra]


def ensure_server_certificate(data_dir: Path, name: str, sans: list[str],
                              ca: CertificateAuthority | None = None) -> tuple[Path, Path]:
    """``<data dir>/pki/<name>.crt|.key`` signed by the CA, (re)issued when the SANs change or
    it is within 30 days of expiry."""
    pki = Path(data_dir) / "pki"
    ca = ca or CertificateAuthority(pki)
    cert_path, key_path = pki / f"{name}.crt", pki / f"{name}.key"
    wanted = default_sans(sans)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        current = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in current.get_values_for_type(x509.DNSName)} | {
            str(v) for v in current.get_values_for_type(x509.IPAddress)
        }
        fresh = cert.not_valid_after_utc - _now() > datetime.timedelta(days=30)
        if fresh and {_normalise(san) for san in wanted} <= have:
            return cert_path, key_path
    key = new_key()
    cert = ca.issue_server_certificate(key.public_key(), name, wanted)
    write_private(key_path, key_pem(key))
    write_public(cert_path, cert_pem(cert) + cert_pem(ca.cert))
    return cert_path, key_path


def _normalise(san: str) -> str:
    try:
        return str(ipaddress.ip_address(san))
    except ValueError:
        return san


# -- client certificates and the signers' extensions ------------------------------------------


def _asn1_string(value: str) -> bytes:
    """DER of ``value`` as Go's ``asn1.Marshal`` writes a string: PrintableString when every
    character allows it, else UTF8String (the reference reads either)."""
    data = value.encode()
    printable = all(c.isalnum() or c in " '()+,-./:=?" for c in value) and value.isascii()
    tag = 0x13 if printable else 0x0C
    if len(data) < 0x80:
        length = bytes([len(data)])
    else:
        raw = len(data).to_bytes((len(data).bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + data


def _read_asn1_string(der: bytes) -> str:
    if len(der) < 2 or der[0] not in (0x0C, 0x13, 0x16):
        raise ValueError("not an ASN.1 string")
    length, offset = der[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(der[2:2 + size], "big"), 2 + size
    return der[offset:offset + length].decode()


def issue_client_certificate(
    signer: CertificateAuthority,
    public_key,
    common_name: str,
    signer_name: str,
    *,
    org_id: str,
    fingerprint: str | None = None,
    lifetime: datetime.timedelta = CLIENT_LIFETIME,
) -> x509.Certificate:
    """A client-authentication certificate carrying the signer, org and fingerprint extensions."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(signer.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(min(_now() + lifetime, signer.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.key.public_key()),
            critical=False,
        )
        .add_extension(x509.UnrecognizedExtension(OID_SIGNER, _asn1_string(signer_name)),
                       critical=False)
        .add_extension(x509.UnrecognizedExtension(OID_ORG_ID, _asn1_string(str(org_id))),
                       critical=False)
    )
    if fingerprint:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(OID_FINGERPRINT, _asn1_string(fingerprint)),
            critical=False,
        )
    return builder.sign(signer.key, hashes.SHA256())


def certificate_extension(cert: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    """The string value of one of our custom extensions, or None if absent or unreadable."""
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    try:
        return _read_asn1_string(value.value)
    except (ValueError, UnicodeDecodeError):
        return None


#: X.509's upper bound on a common name (RFC 5280 ub-common-name); a longer one cannot be put
#: into a certificate that clients accept.
MAX_COMMON_NAME = 64


def _minimal(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _key_digest(public_key) -> bytes:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        return hashlib.sha256(_minimal(numbers.x) + _minimal(numbers.y)).digest()
    if isinstance(public_key, rsa.RSAPublicKey):
        return hashlib.sha256(_minimal(public_key.public_numbers().n)).digest()
    raise TypeError(f"unsupported public key type {type(public_key).__name__}")


def device_fingerprints(public_key) -> tuple[str, str]:
    """The names a device may take from its key: SHA-256 over X‖Y (each minimal big-endian)
    of an EC key, or over the modulus of an RSA key, as lower-case unpadded base32hex (how
    today's agents compute it, agent.md §2.1) or as hex (earlier agents, and the reference's
    examples)."""
    digest = _key_digest(public_key)
    return base64.b32hexencode(digest).decode().rstrip("=").lower(), digest.hex()


def common_name(cert_or_csr) -> str:
    names = cert_or_csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


class PKI:
    """The server's CAs: the root, the client signer and the bundle file agents trust."""

    def __init__(self, data_dir: Path, ca_cert_file: str = "", ca_key_file: str = ""):
        self.directory = Path(data_dir) / "pki"
        if ca_cert_file and ca_key_file:
            self.root = CertificateAuthority(self.directory, cert_path=ca_cert_file,
                                             key_path=ca_key_file)
        else:
            self.root = CertificateAuthority(self.directory)
        self.client_signer = CertificateAuthority(
            self.directory, "flightctl-client-signer", basename="client-signer", parent=self.root
        )
        self.bundle_path = self.directory / "ca-bundle.crt"
        bundle = cert_pem(self.root.cert) + cert_pem(self.client_signer.cert)
        if not self.bundle_path.exists() or self.bundle_path.read_bytes() != bundle:
            write_public(self.bundle_path, bundle)

    @classmethod
    def from_config(cls, config) -> PKI:
        return cls(config.data_dir, config.ca_cert_file, config.ca_key_file)

    def bundle_pem(self) -> bytes:
        return self.bundle_path.read_bytes()

    def server_certificate(self, name: str, sans: list[str]) -> tuple[Path, Path]:
        return ensure_server_certificate(self.directory.parent, name, sans, ca=self.root)
