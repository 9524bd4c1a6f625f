"""The server's certificate authority and TLS certificates (ECDSA P-256, cryptography).

On first start the server creates a root CA in ``<data dir>/pki`` and signs its own TLS
certificate with it, so clients can pin one CA file. Private keys are written 0600 and never
leave this module except as paths handed to the TLS servers.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
SERVER_LIFETIME = datetime.timedelta(days=365)


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
    """A signing key and its certificate, loaded from or created in a directory."""

    def __init__(self, directory: Path, common_name: str = "flightctl-ca"):
        self.directory = Path(directory)
        self.cert_path = self.directory / "ca.crt"
        self.key_path = self.directory / "ca.key"
        if self.cert_path.exists() and self.key_path.exists():
            self.cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
            self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        else:
            self.key = new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
            self.cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self.key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(_now() - datetime.timedelta(minutes=5))
                .not_valid_after(_now() + CA_LIFETIME)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                    critical=False,
                )
                .sign(self.key, hashes.SHA256())
            )
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


def ensure_server_certificate(data_dir: Path, name: str, sans: list[str]) -> tuple[Path, Path]:
    """``<data dir>/pki/<name>.crt|.key`` signed by the CA, (re)issued when the SANs change or
    it is within 30 days of expiry."""
    pki = Path(data_dir) / "pki"
    ca = CertificateAuthority(pki)
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
