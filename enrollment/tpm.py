"""Server-side TPM attestation: parse the TCG CSR, verify it, and make the credential challenge.

The service needs no TPM and no TSS library: the few TPM structures it reads (TPMT_PUBLIC of an
ECC key, TPMS_ATTEST of a certification, TPMT_SIGNATURE) are parsed here, and MakeCredential is
the software computation of TPM 2.0 Part 1 §24 (KDFa, AES-CFB, HMAC) with ``cryptography``.

What a verified TCG CSR proves (agent.md §3.4):

1. the EK certificate chains to a configured manufacturer CA (``tpm_ca_files``);
2. the attestation key (LAK) certified the identity key (LDevID): the certify statement names
   exactly the LDevID public area, which carries ``fixedTPM`` (the key cannot leave a TPM), and
   is signed by the LAK, a restricted key (the TPM only signs statements it generated itself);
3. the embedded PKCS#10 CSR carries the LDevID public key and is signed by it.

The remaining link — that the LAK lives in the TPM of that EK — is the credential challenge:
:func:`make_credential` encrypts a random secret to the EK public key, bound to the LAK name;
only that TPM can return it.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:  # CFB moved to the "decrepit" package in cryptography 47; TPM 2.0 still mandates it.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

TCG_CSR_PREFIX = b"\x01\x00\x01\x00"
TPM_ALG_RSA, TPM_ALG_SHA256, TPM_ALG_NULL, TPM_ALG_ECC, TPM_ALG_ECDSA = (
    0x0001, 0x000B, 0x0010, 0x0023, 0x0018,
)
TPM_ECC_NIST_P256 = 0x0003
TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_CERTIFY = 0x8017
ATTR_FIXED_TPM, ATTR_RESTRICTED, ATTR_SIGN = 0x00000002, 0x00010000, 0x00040000
SECRET_SIZE = 32
# The default (TCG EK Credential Profile) RSA EK template: SHA-256 names, AES-128 symmetric.
EK_SYMMETRIC_BITS = 128


class TPMVerificationError(ValueError):
    """The TCG CSR does not prove what it claims; the message says which link failed."""


class _Reader:
    """Big-endian cursor over a TPM structure; running off the end is a verification error."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TPMVerificationError("truncated TPM structure")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def tpm2b(self) -> bytes:
        return self.take(self.u16())


@dataclass
class TCGCSR:
    """The parts of a TCG-CSR-IDEVID (agent.md §3.3) the service uses."""

    product_model: bytes
    product_serial: bytes
    csr_pem: bytes
    ek_certificate: bytes
    attestation_public: bytes  # TPM2B_PUBLIC of the LAK
    signing_public: bytes  # TPM2B_PUBLIC of the LDevID
    certify_info: bytes  # TPMS_ATTEST
    certify_signature: bytes  # TPMT_SIGNATURE
    signed: bytes  # contents + payload, what the outer signature covers
    signature: bytes


def is_tcg_csr(raw: bytes) -> bool:
    return raw.startswith(TCG_CSR_PREFIX)


def decode_csr_field(text: str) -> tuple[bytes, TCGCSR | None]:
    """``spec.csr`` as sent by an agent: a PEM CSR, or a base64 TCG CSR.

    Returns the PEM PKCS#10 request and, for a TCG CSR, the parsed structure.
    """
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return stripped.encode() + b"\n", None
    try:
        raw = base64.b64decode(stripped, validate=True)
    except ValueError:
        raise TPMVerificationError("spec.csr is neither a PEM CSR nor a base64 TCG CSR")
    if not is_tcg_csr(raw):
        raise TPMVerificationError("spec.csr is neither a PEM CSR nor a base64 TCG CSR")
    parsed = parse_tcg_csr(raw)
    return parsed.csr_pem, parsed


def parse_tcg_csr(raw: bytes) -> TCGCSR:
    reader = _Reader(raw)
    reader.take(4)
    contents_size, signature_size = reader.u32(), reader.u32()
    signed = reader.take(contents_size)
    signature = reader.take(signature_size)
    body = _Reader(signed)
    if body.take(4) != b"\x00\x00\x01\x00":
        raise TPMVerificationError("unsupported TCG CSR content version")
    body.u32(), body.u32()  # hash algorithm and size: the signature is always SHA-256 here
    sizes = [body.u32() for _ in range(13)]
    parts = [body.take(size) for size in sizes]
    return TCGCSR(
        product_model=parts[0], product_serial=parts[1], csr_pem=parts[2],
        ek_certificate=parts[4], attestation_public=parts[5], signing_public=parts[9],
        certify_info=parts[10], certify_signature=parts[11], signed=signed, signature=signature,
    )


# -- TPM structures ----------------------------------------------------------------------------


@dataclass
class TPMPublic:
    """An ECC P-256 TPMT_PUBLIC: attributes, name algorithm, point, and its TPM name."""

    name_alg: int
    attributes: int
    key: ec.EllipticCurvePublicKey
    name: bytes


def parse_ecc_public(tpm2b_public: bytes) -> TPMPublic:
    area = _Reader(tpm2b_public).tpm2b()
    reader = _Reader(area)
    if reader.u16() != TPM_ALG_ECC:
        raise TPMVerificationError("TPM key is not an ECC key")
    name_alg = reader.u16()
    attributes = reader.u32()
    reader.tpm2b()  # authPolicy
    if reader.u16() != TPM_ALG_NULL:  # symmetric: signing keys have none
        raise TPMVerificationError("TPM signing key has a symmetric algorithm")
    if reader.u16() != TPM_ALG_NULL:
        reader.u16()  # scheme hash
    if reader.u16() != TPM_ECC_NIST_P256:
        raise TPMVerificationError("TPM key is not on curve P-256")
    if reader.u16() != TPM_ALG_NULL:
        reader.u16()  # kdf hash
    x, y = reader.tpm2b(), reader.tpm2b()
    if name_alg != TPM_ALG_SHA256:
        raise TPMVerificationError("TPM key name algorithm is not SHA-256")
    key = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    ).public_key()
    name = struct.pack(">H", name_alg) + hashlib.sha256(area).digest()
    return TPMPublic(name_alg, attributes, key, name)


def _ecdsa_signature(tpmt_signature: bytes) -> bytes:
    reader = _Reader(tpmt_signature)
    if reader.u16() != TPM_ALG_ECDSA or reader.u16() != TPM_ALG_SHA256:
        raise TPMVerificationError("certification signature is not ECDSA-SHA256")
    r, s = reader.tpm2b(), reader.tpm2b()
    return encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))


def _certified_name(attest: bytes) -> bytes:
    reader = _Reader(attest)
    if reader.u32() != TPM_GENERATED_VALUE:
        raise TPMVerificationError("certification was not generated by a TPM")
    if reader.u16() != TPM_ST_ATTEST_CERTIFY:
        raise TPMVerificationError("attestation is not a TPM2_Certify statement")
    reader.tpm2b()  # qualifiedSigner
    reader.tpm2b()  # extraData
    reader.take(17 + 8)  # clockInfo, firmwareVersion
    return reader.tpm2b()


# -- verification ------------------------------------------------------------------------------


def load_ca_files(paths: list[str]) -> list[x509.Certificate]:
    """Manufacturer CA certificates from PEM (one or many per file) or DER files."""
    certificates: list[x509.Certificate] = []
    for path in paths:
        data = Path(path).read_bytes()
        if b"-----BEGIN" in data:
            certificates.extend(x509.load_pem_x509_certificates(data))
        else:
            certificates.append(x509.load_der_x509_certificate(data))
    return certificates


def verify_ek_chain(ek_der: bytes, roots: list[x509.Certificate], now=None) -> x509.Certificate:
    """The EK certificate, after checking it chains to one of ``roots`` by signature and dates.

    EK certificates have no subject and a critical SAN with a directory name, which path
    validators for web PKI refuse; the chain is therefore walked here: each certificate must
    be within its validity and directly signed by a configured CA certificate, up to a
    self-signed one.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        current = x509.load_der_x509_certificate(ek_der)
    except ValueError:
        raise TPMVerificationError("EK certificate is not a valid DER certificate")
    ek = current
    for _ in range(8):
        if not current.not_valid_before_utc <= now <= current.not_valid_after_utc:
            raise TPMVerificationError(
                f"certificate {current.subject.rfc4514_string() or '(EK)'} is not valid now"
            )
        issuer = next((ca for ca in roots if ca.subject == current.issuer and _signed_by(
            current, ca)), None)
        if issuer is None:
            raise TPMVerificationError(
                "EK certificate does not chain to a trusted TPM manufacturer CA "
                f"(issuer {current.issuer.rfc4514_string()})"
            )
        if issuer.subject == issuer.issuer:
            return ek
        current = issuer
    raise TPMVerificationError("EK certificate chain is too long")


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def verify_tcg_csr(csr: TCGCSR, roots: list[x509.Certificate]) -> None:
    """Raise :class:`TPMVerificationError` unless every link of the module docstring holds."""
    verify_ek_chain(csr.ek_certificate, roots)
    ek = x509.load_der_x509_certificate(csr.ek_certificate).public_key()
    if not isinstance(ek, rsa.RSAPublicKey):
        raise TPMVerificationError("only RSA endorsement keys are supported")
    lak = parse_ecc_public(csr.attestation_public)
    ldevid = parse_ecc_public(csr.signing_public)
    if lak.attributes & (ATTR_FIXED_TPM | ATTR_RESTRICTED | ATTR_SIGN) != (
        ATTR_FIXED_TPM | ATTR_RESTRICTED | ATTR_SIGN
    ):
        raise TPMVerificationError("attestation key is not a restricted TPM-resident signing key")
    if not ldevid.attributes & ATTR_FIXED_TPM:
        raise TPMVerificationError("device identity key is not bound to its TPM (fixedTPM)")
    if _certified_name(csr.certify_info) != ldevid.name:
        raise TPMVerificationError("certification does not name the device identity key")
    try:
        lak.key.verify(_ecdsa_signature(csr.certify_signature), csr.certify_info,
                       ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TPMVerificationError("certification signature does not verify with the "
                                   "attestation key")
    try:
        request = x509.load_pem_x509_csr(csr.csr_pem)
    except ValueError:
        raise TPMVerificationError("TCG CSR does not embed a valid PKCS#10 CSR")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if request.public_key().public_bytes(der, spki) != ldevid.key.public_bytes(der, spki):
        raise TPMVerificationError("embedded CSR is not for the certified identity key")
    try:
        ldevid.key.verify(csr.signature, csr.signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TPMVerificationError("TCG CSR signature does not verify with the identity key")


# -- credential challenge ----------------------------------------------------------------------


def kdfa(key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int) -> bytes:
    """TPM 2.0 KDFa with HMAC-SHA256 (Part 1 §11.4.10.2), counter mode."""
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        out += hmac.new(
            key,
            struct.pack(">I", counter) + label + b"\x00" + context_u + context_v
            + struct.pack(">I", bits),
            hashlib.sha256,
        ).digest()
        counter += 1
    return out[: bits // 8]


def make_credential(ek: rsa.RSAPublicKey, object_name: bytes, secret: bytes
                    ) -> tuple[bytes, bytes]:
    """Software TPM2_MakeCredential for an RSA EK: (TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET).

    A random seed is RSA-OAEP encrypted to the EK (label "IDENTITY"); from it derive an AES key
    that encrypts the secret and an HMAC key that binds the result to ``object_name`` (the
    LAK), so ActivateCredential only succeeds for that key in that TPM.
    """
    seed = secrets.token_bytes(32)
    encrypted_seed = ek.encrypt(seed, padding.OAEP(
        mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"IDENTITY\x00"
    ))
    symmetric_key = kdfa(seed, b"STORAGE", object_name, b"", EK_SYMMETRIC_BITS)
    plaintext = struct.pack(">H", len(secret)) + secret
    encryptor = Cipher(algorithms.AES(symmetric_key), CFB(b"\x00" * 16)).encryptor()
    enc_identity = encryptor.update(plaintext) + encryptor.finalize()
    hmac_key = kdfa(seed, b"INTEGRITY", b"", b"", 256)
    integrity = hmac.new(hmac_key, enc_identity + object_name, hashlib.sha256).digest()
    id_object = struct.pack(">H", len(integrity)) + integrity + enc_identity
    return (struct.pack(">H", len(id_object)) + id_object,
            struct.pack(">H", len(encrypted_seed)) + encrypted_seed)


def new_challenge(csr: TCGCSR) -> tuple[bytes, bytes, bytes]:
    """(secret, credential blob, encrypted secret) for the TPM that sent ``csr``."""
    ek = x509.load_der_x509_certificate(csr.ek_certificate).public_key()
    lak = parse_ecc_public(csr.attestation_public)
    secret = secrets.token_bytes(SECRET_SIZE)
    blob, encrypted = make_credential(ek, lak.name, secret)
    return secret, blob, encrypted
