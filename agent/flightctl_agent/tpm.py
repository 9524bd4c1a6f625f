"""The device's TPM-resident identity: keys that never leave the TPM, and the proofs built on them.

A TPM identity is three keys (agent.md §3.1):

* the **LDevID** (local device identity): an ECC P-256 signing key created under the storage
  root key with ``fixedTPM | fixedParent | sensitiveDataOrigin``, so its private part is
  generated inside the TPM and can never be exported. It signs the PKCS#10 CSR; the device's
  name is the fingerprint of its public key.
* the **LAK** (local attestation key): a *restricted* signing key in the same TPM. It certifies
  the LDevID (``TPM2_Certify``): a TPM-signed statement that a key with that exact public area
  (including its ``fixedTPM`` attribute) lives in this TPM.
* the **EK** (endorsement key), recreated from the manufacturer's template. Its certificate,
  read from NV memory, ties the TPM to its manufacturer. The service encrypts a challenge to the
  EK public key bound to the LAK's name (MakeCredential); only this TPM can recover it
  (``TPM2_ActivateCredential``), which proves the LAK — and so the LDevID it certified — is
  resident in the TPM the EK certificate describes.

Only public material leaves this module: public keys, the CSR, the TCG CSR, the EK certificate
and the recovered challenge secret. The key blobs kept on disk are encrypted by the TPM under its
storage root key and useless elsewhere (kept 0600 nevertheless): the LDevID in ``key_path`` as a
standard ``TSS2 PRIVATE KEY`` PEM (parent: the owner hierarchy's SRK, which tpm2-openssl and
tpm2-tss-engine derive from the same template, so their tools can load it too), the LAK in
``storage_path``.

This module depends on tpm2-pytss, cryptography and the agent's ``fsutil`` only (no server
code): the device agent imports it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from tpm2_pytss import (
    ESAPI,
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_HT,
    TPM2_RH,
    TPM2_SE,
    TPM2_ST,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPMA_OBJECT,
    TPMT_SIG_SCHEME,
    TPMT_SYM_DEF,
    TPMT_TK_HASHCHECK,
    TCTILdr,
)
from tpm2_pytss.tsskey import TSSPrivKey
from tpm2_pytss.utils import NoSuchIndex, NVReadEK, create_ek_template

from flightctl_agent import fsutil

#: NV index of the RSA-2048 EK certificate (TCG EK Credential Profile). The challenge uses the
#: RSA EK: swtpm and most discrete TPMs provision it.
EK_CERT_INDEX_RSA = 0x01C00002
TCG_CSR_VERSION = b"\x01\x00\x01\x00"
TCG_CSR_CONTENT_VERSION = b"\x00\x00\x01\x00"
TPM_ALG_SHA256 = 0x000B

_KEY_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.SIGN_ENCRYPT
)
_SRK_ATTRS = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.DECRYPT
    | TPMA_OBJECT.NODA
)


class TPMError(RuntimeError):
    """The TPM could not do what the identity needs (no EK certificate, a failed command)."""


def device_name(public_key: ec.EllipticCurvePublicKey) -> str:
    """The device's name: lower-case base32hex (no padding) of SHA-256 over the public point.

    As in the reference agent (agent.md §2.1): for ECDSA the hashed bytes are X || Y, each
    big-endian with *minimal* length (no zero padding).
    """
    numbers = public_key.public_numbers()

    def minimal(n: int) -> bytes:
        return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")

    digest = hashlib.sha256(minimal(numbers.x) + minimal(numbers.y)).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _der(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(content)) + content


# AlgorithmIdentifier { ecdsa-with-SHA256 } (RFC 5758: no parameters).
_ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def build_csr(common_name: str, public_key, sign_digest) -> bytes:
    """A PEM PKCS#10 CSR for ``public_key`` whose signature comes from ``sign_digest``.

    ``cryptography`` only signs with keys it holds, so the CertificationRequestInfo is encoded
    here and the external signer (the TPM) signs its SHA-256: ``sign_digest(digest) -> DER``.
    """
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]).public_bytes()
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # version 0, subject, SubjectPublicKeyInfo, attributes [0] (empty)
    info = _der(0x30, b"\x02\x01\x00" + subject + spki + b"\xa0\x00")
    signature = sign_digest(hashlib.sha256(info).digest())
    der = _der(0x30, info + _ECDSA_SHA256 + _der(0x03, b"\x00" + signature))
    csr = x509.load_der_x509_csr(der)
    if not csr.is_signature_valid:
        raise TPMError("the TPM produced an invalid CSR signature")
    return csr.public_bytes(serialization.Encoding.PEM)


def _u32(n: int) -> bytes:
    return struct.pack(">I", n)


def build_tcg_csr(
    *,
    product_model: bytes,
    product_serial: bytes,
    csr_pem: bytes,
    ek_certificate: bytes,
    attestation_public: bytes,
    signing_public: bytes,
    certify_info: bytes,
    certify_signature: bytes,
    sign_digest,
) -> bytes:
    """The TCG-CSR-IDEVID structure of agent.md §3.3 (big-endian sizes), signed by the LDevID."""
    payload_parts = [
        product_model, product_serial, csr_pem, b"", ek_certificate, attestation_public, b"",
        b"", b"", signing_public, certify_info, certify_signature, b"",
    ]
    content = (
        TCG_CSR_CONTENT_VERSION + _u32(TPM_ALG_SHA256) + _u32(32)
        + b"".join(_u32(len(p)) for p in payload_parts)
    )
    body = content + b"".join(payload_parts)
    signature = sign_digest(hashlib.sha256(body).digest())
    return TCG_CSR_VERSION + _u32(len(body)) + _u32(len(signature)) + body + signature


def has_resource_manager(tcti: str) -> bool:
    """Whether the TCTI goes through a resource manager (the kernel's ``/dev/tpmrm*`` or
    tpm2-abrmd), which flushes a client's objects when it disconnects."""
    name, _, config = tcti.partition(":")
    return name == "tabrmd" or (name == "device" and "tpmrm" in config)


def _flush_transient_objects(esapi: ESAPI) -> None:
    # Without a resource manager (swtpm, mssim, /dev/tpmN) objects of a process that died
    # without flushing stay loaded and fill the TPM's few slots. The agent is the TPM's only
    # user in that set-up, so it clears them before loading its own keys.
    _, data = esapi.get_capability(TPM2_CAP.HANDLES, TPM2_HT.TRANSIENT << 24, 64)
    for handle in data.data.handles:
        esapi.flush_context(esapi.tr_from_tpmpublic(handle))


class TPMIdentity:
    """A device identity held in a TPM: see the module docstring for the three keys.

    ``TPMIdentity.open(tcti, storage_path, key_path)`` connects (e.g.
    ``"swtpm:host=127.0.0.1,port=2321"`` or ``"device:/dev/tpmrm0"``), loads the LDevID from
    ``key_path`` and the LAK from ``storage_path`` or creates them there, and is a context
    manager that flushes the TPM handles on exit. ``sign_digest`` may be called from several
    threads (TLS handshakes); calls into the TPM are serialised.
    """

    def __init__(self, esapi: ESAPI, storage_path: str | os.PathLike,
                 key_path: str | os.PathLike | None = None):
        self.esapi = esapi
        self.storage_path = Path(storage_path)
        self.key_path = Path(key_path) if key_path else self.storage_path.with_name(
            self.storage_path.stem + "-ldevid.pem")
        self._lock = threading.RLock()
        self._ek = self.ldevid = self.lak = None
        srk = self._create_srk()
        try:
            try:
                self.ldevid, self._ldevid_public = self._load_or_create_ldevid(srk)
                self.lak, self._lak_public = self._load_or_create_lak(srk)
            finally:
                # TPMs have few transient object slots (three on swtpm): the SRK is only
                # needed to load its children, and the EK needs a slot later.
                esapi.flush_context(srk)
        except Exception:
            self.close()
            raise

    @classmethod
    def open(cls, tcti: str, storage_path: str | os.PathLike,
             key_path: str | os.PathLike | None = None) -> TPMIdentity:
        name, _, config = tcti.partition(":")
        esapi = ESAPI(TCTILdr(name, config or None))
        try:
            if not has_resource_manager(tcti):
                _flush_transient_objects(esapi)
            return cls(esapi, storage_path, key_path)
        except Exception:
            esapi.close()
            raise

    def __enter__(self) -> TPMIdentity:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._flush(self.ldevid, self.lak, self._ek)
            self.ldevid = self.lak = self._ek = None
            self.esapi.close()

    def release_attestation_keys(self) -> None:
        """Unload the LAK and the EK once enrollment no longer needs them (after that only
        ``sign_digest`` and the public key are usable), freeing TPM object slots."""
        with self._lock:
            self._flush(self.lak, self._ek)
            self.lak = self._ek = None

    def _flush(self, *handles) -> None:
        for handle in handles:
            if handle is not None:
                try:
                    self.esapi.flush_context(handle)
                except Exception:  # noqa: BLE001 - best effort while closing
                    pass

    # -- keys ---------------------------------------------------------------------------------

    def _create_srk(self):
        # A primary key is derived from the owner seed and its template, so recreating it on
        # every start yields the same SRK without storing anything. The template is the TCG
        # "owner SRK" one that a TSS2 PRIVATE KEY with parent TPM2_RH_OWNER refers to.
        template = TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=_SRK_ATTRS)
        handle, *_ = self.esapi.create_primary(None, template, ESYS_TR.OWNER)
        return handle

    def _create_key(self, srk, restricted: bool):
        attrs = _KEY_ATTRS | (TPMA_OBJECT.RESTRICTED if restricted else 0)
        template = TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256", objectAttributes=attrs)
        # The parser gives restricted keys an AES symmetric (right for storage keys); a
        # signing key must have none, or the TPM refuses the template.
        template.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG.NULL
        private, public, *_ = self.esapi.create(srk, None, template)
        return private, public

    def _load_or_create_ldevid(self, srk):
        if self.key_path.exists():
            key = TSSPrivKey.from_pem(self.key_path.read_bytes())
            if key.parent != TPM2_RH.OWNER or not key.empty_auth:
                raise TPMError(f"{self.key_path}: not an LDevID of this agent (parent or auth)")
            private, public = key.private, key.public
        else:
            private, public = self._create_key(srk, restricted=False)
            pem = TSSPrivKey(private, public, empty_auth=True, parent=TPM2_RH.OWNER).to_pem()
            fsutil.atomic_write(self.key_path, pem, mode=0o600)
        return self.esapi.load(srk, private, public), public

    def _load_or_create_lak(self, srk):
        stored = self._read_storage().get("lak")
        if stored:
            private, _ = TPM2B_PRIVATE.unmarshal(base64.b64decode(stored["private"]))
            public, _ = TPM2B_PUBLIC.unmarshal(base64.b64decode(stored["public"]))
        else:
            private, public = self._create_key(srk, restricted=True)
            data = self._read_storage()
            data["lak"] = {
                "private": base64.b64encode(private.marshal()).decode(),
                "public": base64.b64encode(public.marshal()).decode(),
            }
            fsutil.atomic_write(self.storage_path, json.dumps(data), mode=0o600)
        return self.esapi.load(srk, private, public), public

    def _read_storage(self) -> dict:
        if not self.storage_path.exists():
            return {}
        return json.loads(self.storage_path.read_text() or "{}")

    @staticmethod
    def _ecc_public_key(public: TPM2B_PUBLIC) -> ec.EllipticCurvePublicKey:
        point = public.publicArea.unique.ecc
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big"),
            ec.SECP256R1(),
        ).public_key()

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The LDevID public key (the device identity)."""
        return self._ecc_public_key(self._ldevid_public)

    def device_name(self) -> str:
        return device_name(self.public_key())

    # -- signing ------------------------------------------------------------------------------

    def sign_digest(self, digest: bytes) -> bytes:
        """ECDSA-SHA256 signature (DER) by the LDevID over a SHA-256 ``digest``, in the TPM."""
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        ticket = TPMT_TK_HASHCHECK(tag=TPM2_ST.HASHCHECK, hierarchy=TPM2_RH.NULL)
        with self._lock:
            if self.ldevid is None:
                raise TPMError("the TPM identity is closed")
            signature = self.esapi.sign(self.ldevid, TPM2B_DIGEST(digest), scheme, ticket)
        ecdsa = signature.signature.ecdsa
        return encode_dss_signature(
            int.from_bytes(bytes(ecdsa.signatureR), "big"),
            int.from_bytes(bytes(ecdsa.signatureS), "big"),
        )

    def csr(self, common_name: str | None = None) -> bytes:
        """PEM PKCS#10 CSR with CN = the device name (default), signed inside the TPM."""
        return build_csr(common_name or self.device_name(), self.public_key(), self.sign_digest)

    # -- attestation --------------------------------------------------------------------------

    def ek_certificate(self) -> bytes:
        """The DER EK certificate the manufacturer stored in NV memory."""
        try:
            with self._lock:
                return NVReadEK(self.esapi)(EK_CERT_INDEX_RSA)
        except NoSuchIndex:
            raise TPMError("the TPM has no RSA EK certificate (NV index 0x01c00002)") from None

    def vendor_info(self) -> str:
        """``systemInfo.tpmVendorInfo`` as the reference reports it (agent.md §3.1)."""
        try:
            self.ek_certificate()
        except Exception:  # noqa: BLE001 - any failure means the vendor is not known
            return "tpm-vendor-unavailable"
        return "tpm-vendor-available"

    def _endorsement_key(self):
        if self._ek is None:
            _, template = create_ek_template("EK-RSA2048", NVReadEK(self.esapi))
            self._ek, *_ = self.esapi.create_primary(None, template, ESYS_TR.ENDORSEMENT)
        return self._ek

    def certify_identity(self) -> tuple[bytes, bytes]:
        """``TPM2_Certify`` of the LDevID by the LAK: (TPMS_ATTEST, marshalled TPMT_SIGNATURE)."""
        scheme = TPMT_SIG_SCHEME(scheme=TPM2_ALG.ECDSA)
        scheme.details.any.hashAlg = TPM2_ALG.SHA256
        with self._lock:
            attest, signature = self.esapi.certify(
                self.ldevid, self.lak, TPM2B_DATA(b"\x00" * 8), scheme
            )
        return attest.marshal()[2:], signature.marshal()

    def tcg_csr(self, *, product_model: str = "FlightCtl-Device",
                product_serial: str = "unknown-serial") -> bytes:
        """The TCG CSR (agent.md §3.3) to send, base64-encoded, as ``spec.csr``."""
        certify_info, certify_signature = self.certify_identity()
        return build_tcg_csr(
            product_model=product_model.encode(),
            product_serial=product_serial.encode(),
            csr_pem=self.csr(),
            ek_certificate=self.ek_certificate(),
            attestation_public=self._lak_public.marshal(),
            signing_public=self._ldevid_public.marshal(),
            certify_info=certify_info,
            certify_signature=certify_signature,
            sign_digest=self.sign_digest,
        )

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """Recover the service's challenge secret; only works in the TPM that holds the EK and
        the LAK the challenge was made for."""
        with self._lock:
            ek = self._endorsement_key()
            session = self.esapi.start_auth_session(
                tpm_key=ESYS_TR.NONE, bind=ESYS_TR.NONE, session_type=TPM2_SE.POLICY,
                symmetric=TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), auth_hash=TPM2_ALG.SHA256,
            )
            try:
                # The EK's policy is PolicySecret(endorsement hierarchy).
                self.esapi.policy_secret(ESYS_TR.ENDORSEMENT, session)
                blob, _ = TPM2B_ID_OBJECT.unmarshal(credential_blob)
                secret, _ = TPM2B_ENCRYPTED_SECRET.unmarshal(encrypted_secret)
                recovered = self.esapi.activate_credential(
                    self.lak, ek, blob, secret, session1=ESYS_TR.PASSWORD, session2=session
                )
            finally:
                self.esapi.flush_context(session)
            return bytes(recovered)
