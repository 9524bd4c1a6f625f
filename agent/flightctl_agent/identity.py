"""The device identity: the key pair the device is named after and authenticates with.

A *file* identity keeps an ECDSA P-256 key in ``/var/lib/flightctl/certs/agent.key`` (0600). A
*TPM* identity (``tpm.enabled``) keeps its LDevID inside the TPM; ``agent.key`` then holds the
TPM-wrapped blob as a ``TSS2 PRIVATE KEY`` PEM, useless without that TPM, and the LAK blob lives
in ``tpm.storage-file-path``. Either way the management certificate issued at enrollment
(``agent.crt``) binds the key to the device name.

The running agent of a file identity never loads ``cryptography`` (docs/scale.md, "Sixth
round: the agent's footprint"): it reads its certificate with ``certinfo`` and leaves the key
to OpenSSL; creating the key and signing CSRs happen in a child process (``softkey``). A TPM
identity loads it anyway, with tpm2-pytss.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
from pathlib import Path

from flightctl_agent import certinfo, fsutil, protocol, softkey

log = logging.getLogger(__name__)


class IdentityUnavailable(Exception):
    """The configured identity cannot be used (e.g. no usable TPM); the agent exits."""


class Identity:
    """What both identities share: the certificate and CSR files next to the key."""

    kind = ""

    def __init__(self, certs_dir: Path):
        self.certs_dir = certs_dir
        self.key_path = certs_dir / "agent.key"
        self.csr_path = certs_dir / "agent.csr"
        self.cert_path = certs_dir / "agent.crt"

    @property
    def public_key(self):
        raise NotImplementedError

    @property
    def name(self) -> str:
        return protocol.device_name(self.public_key)

    def renewal_csr(self) -> bytes:
        """A fresh PEM CSR from the same key, for management-certificate renewal."""
        raise NotImplementedError

    def tls_key_file(self) -> Path:
        return self.key_path

    def tls_client_key(self):
        """A key object for TLS contexts that cannot use ``tls_key_file`` (None: use the file);
        see ``AgentClient``."""
        return None

    def has_certificate(self) -> bool:
        return self.cert_path.exists()

    def certificate(self) -> certinfo.CertificateInfo | None:
        try:
            return certinfo.load_pem(self.cert_path.read_bytes())
        except (OSError, ValueError):
            return None

    def store_certificate(self, pem: bytes) -> None:
        certinfo.load_pem(pem)  # refuse to store something unusable
        fsutil.atomic_write(self.cert_path, pem, mode=0o600)
        fsutil.wipe(self.csr_path)

    def wipe(self) -> None:
        """Destroy the identity: certificate, CSR and key (decommissioning)."""
        for path in (self.cert_path, self.csr_path, self.key_path):
            fsutil.wipe(path)

    def enrolled(self) -> None:
        """The device holds its management certificate (a TPM frees its attestation keys)."""

    def close(self) -> None:
        """Release what the identity holds open (nothing for a file key)."""


class FileIdentity(Identity):
    """A software key on disk; created on first start and kept until decommissioning.

    Once enrolled, the device's name is read from its certificate (whose key OpenSSL has
    checked against the key file); before, and to sign a renewal CSR, ``softkey`` reads the
    key in a child process.
    """

    kind = "file"

    def __init__(self, certs_dir: Path):
        super().__init__(certs_dir)
        self._name: str | None = None
        self._enrollment_csr: str | None = None

    def initialize(self) -> None:
        cert = self.certificate() if self.key_path.exists() else None
        if cert is not None:
            self._check_pair()
            self._name = protocol.device_name_of_bytes(cert.public_key_bytes)
        else:
            self._prepare_enrollment()

    def _check_pair(self) -> None:
        """OpenSSL loads the key and checks it against the certificate, as TLS will."""
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                self.cert_path, self.key_path, password=b"")
        except ssl.SSLError as e:
            if self.key_path.read_bytes().startswith(b"-----BEGIN TSS2 PRIVATE KEY-----"):
                raise IdentityUnavailable(f"{self.key_path} is a TPM key, not a software key; "
                                          "is tpm.enabled missing?") from None
            raise IdentityUnavailable(f"{self.key_path} is not the key of {self.cert_path} "
                                      f"({e.reason or e})") from None

    def _prepare_enrollment(self) -> None:
        try:
            made = softkey.enrollment_csr(self.key_path, self.csr_path)
        except softkey.SoftKeyError as e:
            raise IdentityUnavailable(str(e)) from None
        self._name, self._enrollment_csr = made["name"], made["csr"]

    @property
    def name(self) -> str:
        return self._name

    def enrollment_csr(self) -> str:
        """The CSR for the enrollment request, reused across restarts while its CN matches."""
        if self._enrollment_csr is None:
            self._prepare_enrollment()
        return self._enrollment_csr

    def renewal_csr(self) -> bytes:
        return softkey.renewal_csr(self.key_path)["csr"].encode()

    def wipe(self) -> None:
        super().wipe()
        self._enrollment_csr = None


def tcti_for(device_path: str) -> str:
    """The TSS transmission interface for ``tpm.device-path``.

    A TPM character device is used through its kernel resource manager (``/dev/tpm0`` →
    ``/dev/tpmrm0``, as the reference agent does) so that other TPM users can coexist. A value
    that is already a TCTI specification (``swtpm:host=…,port=…``, ``mssim:…``, ``tabrmd:…``,
    ``device:…``) is used as is: tests and simulators point the agent at a software TPM.
    """
    if not device_path.startswith("/"):
        return device_path
    path = Path(device_path)
    if path.name.startswith("tpm") and not path.name.startswith("tpmrm"):
        managed = path.with_name("tpmrm" + path.name[3:])
        if managed.exists():
            path = managed
    return f"device:{path}"


class TPMDeviceIdentity(Identity):
    """An LDevID in the TPM (see ``flightctl_agent.tpm``): the agent holds the TPM open for its
    lifetime, because every mutual-TLS handshake is signed there (``flightctl_agent.tpm_tls``).
    """

    kind = "tpm"

    def __init__(self, certs_dir: Path, tcti: str, storage_path: Path):
        super().__init__(certs_dir)
        self.tcti = tcti
        self.storage_path = storage_path
        self.tpm = None
        self._tls_key = None
        self._vendor = ""

    def initialize(self) -> None:
        # libtss2 logs expected misses (probing the optional EK template NV indices) as
        # ERROR lines on stderr; real failures reach the agent as exceptions anyway.
        os.environ.setdefault("TSS2_LOG", "all+none")
        try:
            from flightctl_agent import tpm, tpm_tls

            tpm_tls.check_available()
            self.tpm = tpm.TPMIdentity.open(self.tcti, self.storage_path, self.key_path)
        except ImportError as e:
            raise IdentityUnavailable(f"tpm.enabled needs tpm2-pytss: {e}") from None
        except Exception as e:  # noqa: BLE001 - TSS and OpenSSL errors vary; one line
            raise IdentityUnavailable(f"cannot use the TPM at {self.tcti}: {e}") from None
        self._vendor = self.tpm.vendor_info()
        log.info("Using TPM-based identity provider")

    @property
    def public_key(self):
        return self.tpm.public_key()

    def vendor_info(self) -> str:
        return self._vendor

    def enrollment_csr(self) -> str:
        """The TCG CSR (base64), signed and certified in the TPM, with its EK certificate."""
        return base64.b64encode(self.tpm.tcg_csr()).decode()

    def prove(self, client, name: str) -> None:
        """Answer the service's credential challenge (agent.md §3.4) over ``client``."""
        challenge = client.get_tpm_challenge(name)
        secret = self.tpm.activate_credential(
            base64.b64decode(challenge["credentialBlob"]),
            base64.b64decode(challenge["encryptedSecret"]))
        client.answer_tpm_challenge(name, base64.b64encode(secret).decode())
        log.info("TPM credential challenge answered")

    def enrolled(self) -> None:
        # Enrollment is over: the attestation keys can leave the TPM's few object slots.
        self.tpm.release_attestation_keys()

    def renewal_csr(self) -> bytes:
        return self.tpm.csr(self.name)

    def tls_client_key(self):
        if self._tls_key is None:
            from cryptography.hazmat.primitives import serialization  # loaded by tpm2-pytss

            from flightctl_agent.tpm_tls import TPMClientKey

            point = self.public_key.public_bytes(serialization.Encoding.X962,
                                                 serialization.PublicFormat.UncompressedPoint)
            self._tls_key = TPMClientKey(point, self.tpm.sign_digest)
        return self._tls_key

    def wipe(self) -> None:
        super().wipe()
        fsutil.wipe(self.storage_path)

    def close(self) -> None:
        if self.tpm is not None:
            self.tpm.close()
            self.tpm = None
