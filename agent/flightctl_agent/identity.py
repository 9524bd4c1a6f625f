"""The device identity: the key pair the device is named after and authenticates with.

A *file* identity keeps an ECDSA P-256 key in ``/var/lib/flightctl/certs/agent.key`` (0600). The
management certificate issued at enrollment (``agent.crt``) binds that key to the device name.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flightctl_agent import fsutil, protocol


class FileIdentity:
    """A software key on disk; created on first start and kept until decommissioning."""

    kind = "file"

    def __init__(self, certs_dir: Path):
        self.certs_dir = certs_dir
        self.key_path = certs_dir / "agent.key"
        self.csr_path = certs_dir / "agent.csr"
        self.cert_path = certs_dir / "agent.crt"
        self.private_key = None

    def initialize(self) -> None:
        if self.key_path.exists():
            self.private_key = serialization.load_pem_private_key(
                self.key_path.read_bytes(), password=None)
            return
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())
        fsutil.atomic_write(self.key_path, pem, mode=0o600)

    @property
    def public_key(self):
        return self.private_key.public_key()

    @property
    def name(self) -> str:
        return protocol.device_name(self.public_key)

    def enrollment_csr(self) -> str:
        """The CSR for the enrollment request, reused across restarts while its CN matches."""
        if self.csr_path.exists():
            pem = self.csr_path.read_bytes()
            if protocol.csr_common_name(pem) == self.name:
                return pem.decode()
        pem = protocol.build_csr(self.private_key, self.name)
        fsutil.atomic_write(self.csr_path, pem, mode=0o600)
        return pem.decode()

    def renewal_csr(self) -> bytes:
        """A fresh CSR from the same key, for management-certificate renewal."""
        return protocol.build_csr(self.private_key, self.name)

    def tls_key_file(self) -> Path:
        return self.key_path

    def has_certificate(self) -> bool:
        return self.cert_path.exists()

    def certificate(self) -> x509.Certificate | None:
        try:
            return x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        except (OSError, ValueError):
            return None

    def store_certificate(self, pem: bytes) -> None:
        x509.load_pem_x509_certificate(pem)  # refuse to store something unusable
        fsutil.atomic_write(self.cert_path, pem, mode=0o600)
        fsutil.wipe(self.csr_path)

    def wipe(self) -> None:
        """Destroy the identity: certificate, CSR and key (decommissioning)."""
        for path in (self.cert_path, self.csr_path, self.key_path):
            fsutil.wipe(path)
        self.private_key = None
