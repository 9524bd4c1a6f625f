"""What the running agent reads from its management certificate, without an X.509 library.

Once enrolled, the agent needs three facts of its certificate: its serial
(``managementCertSerial``), its validity (renewal scheduling, ``managementCertNotAfter``, the
expiry metric) and its public key (the device's name). Importing ``cryptography`` for them
would keep ~10 MB of RSS mapped for the agent's whole life (docs/scale.md, "Sixth round: the
agent's footprint"), so they are read here from the certificate's DER structure (RFC 5280
§4.1). This reads a certificate the service issued; it validates nothing: OpenSSL (through
``ssl``) checks the certificate and its key whenever the agent opens a connection.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
_SEQUENCE, _INTEGER, _BIT_STRING, _OID = 0x30, 0x02, 0x03, 0x06
_UTC_TIME, _GENERALIZED_TIME, _VERSION = 0x17, 0x18, 0xA0
_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")  # 1.2.840.10045.2.1
_RSA_ENCRYPTION = bytes.fromhex("2a864886f70d010101")  # 1.2.840.113549.1.1.1


@dataclass(frozen=True)
class CertificateInfo:
    """The facts of one certificate the agent uses, named as ``cryptography`` names them so
    that either can be passed where only these are read."""

    serial_number: int
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    #: the bytes the device name is hashed from (``protocol.public_key_bytes``)
    public_key_bytes: bytes


def load_pem(pem: bytes) -> CertificateInfo:
    """The first certificate of a PEM file; ValueError if it is none or not well formed."""
    found = _PEM.search(pem)
    if not found:
        raise ValueError("no PEM certificate")
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except binascii.Error as e:
        raise ValueError(f"invalid PEM certificate: {e}") from None
    return load_der(der)


def load_der(der: bytes) -> CertificateInfo:
    try:
        return _certificate(der)
    except IndexError:  # fewer elements than a certificate has
        raise ValueError("truncated certificate") from None


def _certificate(der: bytes) -> CertificateInfo:
    certificate = _expect(der, _SEQUENCE)
    tbs = _children(_expect(certificate, _SEQUENCE))
    if tbs and tbs[0][0] == _VERSION:
        tbs = tbs[1:]
    if len(tbs) < 6:
        raise ValueError("truncated certificate")
    (serial_tag, serial), _, _, (validity_tag, validity), _, (spki_tag, spki) = tbs[:6]
    if (serial_tag, validity_tag, spki_tag) != (_INTEGER, _SEQUENCE, _SEQUENCE):
        raise ValueError("not an X.509 certificate")
    times = _children(validity)
    if len(times) != 2:
        raise ValueError("invalid validity")
    return CertificateInfo(serial_number=int.from_bytes(serial, "big", signed=True),
                           not_valid_before_utc=_time(*times[0]),
                           not_valid_after_utc=_time(*times[1]),
                           public_key_bytes=_public_key_bytes(spki))


def _public_key_bytes(spki: bytes) -> bytes:
    """X‖Y of an uncompressed EC point, or an RSA modulus, each minimal big-endian."""
    (_, algorithm), (key_tag, key) = _children(spki)[:2]
    oid = _children(algorithm)[0]
    if oid[0] != _OID or key_tag != _BIT_STRING or not key or key[0] != 0:
        raise ValueError("invalid subject public key")
    key = key[1:]  # the count of unused bits, always 0 for a key
    if oid[1] == _EC_PUBLIC_KEY:
        if len(key) % 2 != 1 or key[0] != 0x04:
            raise ValueError("unsupported EC point encoding (not uncompressed)")
        half = len(key) // 2
        return _minimal(key[1:1 + half]) + _minimal(key[1 + half:])
    if oid[1] == _RSA_ENCRYPTION:
        modulus_tag, modulus = _children(_expect(key, _SEQUENCE))[0]
        if modulus_tag != _INTEGER:
            raise ValueError("invalid RSA public key")
        return _minimal(modulus)
    raise ValueError("unsupported public key algorithm")


def _minimal(big_endian: bytes) -> bytes:
    return big_endian.lstrip(b"\x00") or b"\x00"


def _time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii")
    if tag == _UTC_TIME and len(text) == 13:  # YYMMDDHHMMSSZ; RFC 5280: YY < 50 is 20YY
        year = int(text[:2])
        text = f"{year + (2000 if year < 50 else 1900)}{text[2:]}"
    elif tag != _GENERALIZED_TIME or len(text) != 15:
        raise ValueError(f"unsupported certificate time {text!r}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """The DER element at ``pos``: (tag, contents, position after it)."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise ValueError("invalid DER length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:pos + length], pos + length


def _expect(data: bytes, tag: int) -> bytes:
    found, contents, _ = _read(data, 0)
    if found != tag:
        raise ValueError(f"expected DER tag {tag:#x}, found {found:#x}")
    return contents


def _children(contents: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(contents):
        tag, value, pos = _read(contents, pos)
        out.append((tag, value))
    return out
