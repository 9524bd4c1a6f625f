"""Blocking HTTP client for the agent API (mutual TLS, ``Flightctl-API-Version`` header).

Only transport lives here; request bodies and response parsing come from ``protocol`` so an
asyncio client can share them.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from pathlib import Path
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from flightctl_agent import metrics, protocol
from flightctl_agent.config import ServiceConfig


class APIError(Exception):
    """A non-success answer from the service; ``status`` is the HTTP code (0: no answer)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class _TLS13Adapter(HTTPAdapter):
    """Requires TLS 1.3 as the reference agent does (agent.md §11).

    ``cafile``: the service's CA, then the only one trusted (as by the reference agent); the
    system's CAs are loaded only without one (parsed, they cost ~1 MB of RSS per context:
    docs/scale.md, "Sixth round: the agent's footprint"). ``configure(context)``, if given,
    installs the client certificate and key in the context once (a key in a TPM cannot be
    named by a file for urllib3 to load per connection).
    """

    def __init__(self, configure=None, cafile: str | None = None):
        self._configure = configure
        self._cafile = cafile
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        ctx = ssl.create_default_context(cafile=self._cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        if self._configure is not None:
            self._configure(ctx)
        kwargs["ssl_context"] = ctx
        return super().init_poolmanager(*args, **kwargs)


class AgentClient:
    """One authenticated connection to a service endpoint (enrollment or management)."""

    def __init__(self, service: ServiceConfig, cert_pem: bytes | None = None,
                 key_file: Path | None = None, workdir: Path | None = None,
                 client_key=None):
        """``client_key``: a key object with ``install(context, cert_file)`` (a TPM key,
        ``flightctl_agent.tpm_tls``) used instead of ``key_file``."""
        self.server = service.server.rstrip("/")
        self.session = requests.Session()
        # REQUESTS_CA_BUNDLE in the environment would silently replace our CA: ignore the env.
        self.session.trust_env = False
        self.session.headers[protocol.API_VERSION_HEADER] = protocol.API_VERSION
        self._tmp = tempfile.TemporaryDirectory(prefix="fctl-agent-tls-", dir=workdir)
        tmp = Path(self._tmp.name)
        ca = service.ca_pem()
        if service.insecure_skip_verify:
            self.verify = False
        elif ca:
            (tmp / "ca.crt").write_bytes(ca)
            self.verify = str(tmp / "ca.crt")
        else:
            self.verify = True
        cert = cert_pem if cert_pem is not None else service.cert_pem()
        self.cert = None
        configure = None
        if cert:
            cert_file = tmp / "client.crt"
            cert_file.write_bytes(cert)
            if client_key is not None:
                def configure(ctx):
                    client_key.install(ctx, cert_file)
            else:
                key = None if key_file else service.key_pem()
                if key:
                    key_path = tmp / "client.key"
                    key_path.write_bytes(key)
                    os.chmod(key_path, 0o600)
                else:
                    key_path = key_file or service.client_key
                self.cert = (str(cert_file), str(key_path))
        self.session.mount("https://", _TLS13Adapter(
            configure, cafile=self.verify if isinstance(self.verify, str) else None))

    def close(self) -> None:
        self.session.close()
        self._tmp.cleanup()

    def _call(self, method: str, path: str, body=None, timeout: float = 60, **params):
        try:
            r = self.session.request(
                method, f"{self.server}/api/v1{path}", params=params or None,
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json"} if body is not None else None,
                verify=self.verify, cert=self.cert, timeout=timeout)
        except requests.RequestException as e:
            raise APIError(0, str(e)) from e
        return r

    @staticmethod
    def _json(r: requests.Response, ok=(200, 201)):
        if r.status_code not in ok:
            try:
                message = r.json().get("message") or r.text
            except ValueError:
                message = r.text
            raise APIError(r.status_code, message)
        return r.json() if r.content else None

    # enrollment
    def create_enrollment_request(self, body: dict) -> dict:
        with metrics.timed("create_enrollmentrequest"):
            r = self._call("POST", "/enrollmentrequests", body)
        if r.status_code == 409:
            return self.get_enrollment_request(body["metadata"]["name"])
        return self._json(r)

    def get_enrollment_request(self, name: str) -> dict:
        with metrics.timed("get_enrollmentrequest"):
            return self._json(self._call("GET", f"/enrollmentrequests/{quote(name)}"))

    def get_tpm_challenge(self, name: str) -> dict:
        """A credential challenge for the request's TPM (docs/identity.md)."""
        return self._json(self._call("POST", f"/enrollmentrequests/{quote(name)}/tpmchallenge",
                                     {}))

    def answer_tpm_challenge(self, name: str, secret_b64: str) -> dict:
        return self._json(self._call(
            "POST", f"/enrollmentrequests/{quote(name)}/tpmchallenge/response",
            {"secret": secret_b64}))

    # management
    def get_rendered(self, name: str, known_version: str | None,
                     timeout: float = 240) -> dict | None:
        """The rendered device, or None when the service has nothing newer (204/409)."""
        params = {"knownRenderedVersion": known_version} if known_version is not None else {}
        with metrics.timed("get_rendered_device_spec"):
            r = self._call("GET", f"/devices/{quote(name)}/rendered", timeout=timeout, **params)
        if r.status_code in (204, 409):
            return None
        return self._json(r)

    def put_status(self, name: str, document: dict) -> dict:
        with metrics.timed("update_device_status"):
            return self._json(self._call("PUT", f"/devices/{quote(name)}/status", document))

    def create_csr(self, body: dict) -> dict:
        with metrics.timed("create_certificate_signing_request"):
            return self._json(self._call("POST", "/certificatesigningrequests", body))

    def get_csr(self, name: str) -> dict:
        with metrics.timed("get_certificate_signing_request"):
            return self._json(self._call("GET", f"/certificatesigningrequests/{quote(name)}"))
