"""Mutual TLS from Python's ``ssl`` with a client key that never leaves the TPM.

Python's ``ssl.SSLContext`` only accepts a private key as a file that OpenSSL decodes itself.
The obvious route, the tpm2-openssl provider decoding the ``TSS2 PRIVATE KEY`` file, fails in
the OpenSSL 3.0 of the devices we target: libssl fetches the ECDSA signature implementation
with the context's property query (none from Python), gets the default provider's, exports the
TPM key to it (the provider exports the public half and reports success) and the handshake
fails with "missing private key"; preferring the provider globally (``?provider=tpm2``) moves
every hash, cipher and signature *verification* of the process into the TPM, which runs out of
object slots within one handshake.

So the key handed to libssl here is an OpenSSL EC key holding only the LDevID's public point,
whose ECDSA sign method calls back into Python; the callback has the TPM sign the digest
(``TPMIdentity.sign_digest``, TPM2_Sign). libssl treats it as any other EC key: TLS 1.3 picks
``ecdsa_secp256r1_sha256`` and hands over the 32-byte transcript digest. Verification, hashing and
ciphers stay in software. Nothing of the private key exists outside the TPM.

The bindings use the libssl/libcrypto that Python's ``_ssl`` module is linked against (looking
symbols up through ``_ssl`` itself), so the key and the context live in the same library.
``ssl.SSLContext`` exposes no handle to its ``SSL_CTX``; CPython keeps the pointer as the first
field after the object header, and every use checks it against the context's options first.
"""

from __future__ import annotations

import _ssl
import ctypes
import logging
import ssl
from pathlib import Path

log = logging.getLogger(__name__)

NID_X9_62_PRIME256V1 = 415
P256_DIGEST_SIZE = 32

_P = ctypes.c_void_p
_INT = ctypes.c_int
# int (*sign)(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
#             unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *eckey)
_SIGN_FN = ctypes.CFUNCTYPE(_INT, _INT, ctypes.POINTER(ctypes.c_ubyte), _INT,
                            ctypes.POINTER(ctypes.c_ubyte), ctypes.POINTER(ctypes.c_uint),
                            _P, _P, _P)

_SIGNATURES = {
    "EC_KEY_new_by_curve_name": (_P, _INT),
    "EC_KEY_get0_group": (_P, _P),
    "EC_KEY_set_public_key": (_INT, _P, _P),
    "EC_KEY_set_method": (_INT, _P, _P),
    "EC_KEY_free": (None, _P),
    "EC_POINT_new": (_P, _P),
    "EC_POINT_oct2point": (_INT, _P, _P, ctypes.c_char_p, ctypes.c_size_t, _P),
    "EC_POINT_free": (None, _P),
    "EC_KEY_get_default_method": (_P,),
    "EC_KEY_METHOD_new": (_P, _P),
    "EC_KEY_METHOD_get_sign": (None, _P, ctypes.POINTER(_P), ctypes.POINTER(_P),
                               ctypes.POINTER(_P)),
    "EC_KEY_METHOD_set_sign": (None, _P, _P, _P, _P),
    "ECDSA_size": (_INT, _P),
    "EVP_PKEY_new": (_P,),
    "EVP_PKEY_set1_EC_KEY": (_INT, _P, _P),
    "EVP_PKEY_free": (None, _P),
    "ERR_clear_error": (None,),
    "SSL_CTX_get_options": (ctypes.c_uint64, _P),
    "SSL_CTX_use_certificate_chain_file": (_INT, _P, ctypes.c_char_p),
    "SSL_CTX_use_PrivateKey": (_INT, _P, _P),
    "SSL_CTX_check_private_key": (_INT, _P),
}

_lib = None
#: Keys whose callbacks C code may call for as long as the process lives: never collected.
_LIVE_KEYS: list[TPMClientKey] = []


class TPMTLSUnavailable(RuntimeError):
    """This Python's OpenSSL cannot be given a TPM-resident client key."""


def _openssl():
    global _lib
    if _lib is None:
        # dlsym on _ssl's own handle searches the libraries it was linked against: the
        # libssl/libcrypto pair its SSL_CTX objects come from.
        lib = ctypes.CDLL(_ssl.__file__)
        try:
            for name, (restype, *argtypes) in _SIGNATURES.items():
                function = getattr(lib, name)
                function.restype, function.argtypes = restype, argtypes
        except AttributeError as e:
            raise TPMTLSUnavailable(f"{ssl.OPENSSL_VERSION} lacks a needed function: {e}") \
                from None
        _lib = lib
    return _lib


def check_available() -> None:
    """Raise TPMTLSUnavailable unless TLS with a TPM key can work in this process."""
    lib = _openssl()
    _ssl_ctx(lib, ssl.create_default_context())


def _ssl_ctx(lib, context: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` behind ``context`` (see the module docstring), verified."""
    pointer = _P.from_address(id(context) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != int(context.options):
        raise TPMTLSUnavailable("cannot reach the OpenSSL context of this Python's ssl module")
    return pointer


class TPMClientKey:
    """A client key for ``ssl.SSLContext`` whose signatures are made by ``sign_digest``.

    ``public_point`` is the uncompressed P-256 point (0x04 || X || Y); ``sign_digest(digest)``
    returns a DER ECDSA signature over a SHA-256 digest.
    """

    def __init__(self, public_point: bytes, sign_digest):
        self._sign_digest = sign_digest
        lib = self._lib = _openssl()
        self._callback = _SIGN_FN(self._sign)
        key = lib.EC_KEY_new_by_curve_name(NID_X9_62_PRIME256V1)
        point = lib.EC_POINT_new(lib.EC_KEY_get0_group(key))
        try:
            if not lib.EC_POINT_oct2point(lib.EC_KEY_get0_group(key), point, public_point,
                                          len(public_point), None):
                raise TPMTLSUnavailable("the TPM key's public point is not on P-256")
            lib.EC_KEY_set_public_key(key, point)
            # A copy of OpenSSL's EC method with only the sign step replaced.
            method = lib.EC_KEY_METHOD_new(lib.EC_KEY_get_default_method())
            setup, sign_sig = _P(), _P()
            lib.EC_KEY_METHOD_get_sign(method, ctypes.byref(_P()), ctypes.byref(setup),
                                       ctypes.byref(sign_sig))
            lib.EC_KEY_METHOD_set_sign(method, ctypes.cast(self._callback, _P), setup, sign_sig)
            lib.EC_KEY_set_method(key, method)
            self._pkey = lib.EVP_PKEY_new()
            if not lib.EVP_PKEY_set1_EC_KEY(self._pkey, key):
                raise TPMTLSUnavailable("OpenSSL refused the TPM key")
        finally:
            lib.EC_POINT_free(point)
            lib.EC_KEY_free(key)  # the EVP_PKEY holds its own reference
        _LIVE_KEYS.append(self)

    def install(self, context: ssl.SSLContext, cert_file: Path) -> None:
        """Make ``context`` present ``cert_file`` (PEM chain) with this key."""
        lib = self._lib
        ctx = _ssl_ctx(lib, context)
        if not lib.SSL_CTX_use_certificate_chain_file(ctx, str(cert_file).encode()):
            lib.ERR_clear_error()
            raise ssl.SSLError(f"cannot load the client certificate {cert_file}")
        if not (lib.SSL_CTX_use_PrivateKey(ctx, self._pkey)
                and lib.SSL_CTX_check_private_key(ctx)):
            lib.ERR_clear_error()
            raise ssl.SSLError(f"the TPM key does not match the certificate {cert_file}")

    def _sign(self, _type, digest, digest_len, sig, sig_len, _kinv, _r, eckey) -> int:
        # Called by libssl during a handshake (with the GIL taken by ctypes). An exception
        # must not cross into C: failing the signature fails that handshake only.
        try:
            if digest_len != P256_DIGEST_SIZE:
                raise ValueError(f"unsupported digest size {digest_len}")
            der = self._sign_digest(ctypes.string_at(digest, digest_len))
            if len(der) > self._lib.ECDSA_size(eckey):
                raise ValueError("signature larger than ECDSA_size")
            ctypes.memmove(sig, der, len(der))
            sig_len[0] = len(der)
            log.debug("TLS handshake signature made in the TPM")
            return 1
        except Exception as e:  # noqa: BLE001 - see above
            log.error("TLS signature in the TPM failed: %s", e)
            return 0
