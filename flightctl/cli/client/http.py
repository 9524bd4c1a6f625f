"""The HTTP client of the command line: one ``requests`` session per invocation.

Every request carries ``Flightctl-API-Version`` (v1beta1 for the core API, as the reference
clients send it), the bearer token and ``org_id`` when an organization is selected. Failures
become :class:`CliError` with the server's ``Status`` message, so commands never print a
traceback for a refused request, a dead server or a bad certificate.

Connections are retried by urllib3 (:data:`RETRIES`): a connection that could not be opened, for
any method (nothing was sent), and a reused keep-alive connection the server closed under us, a
reset or a read timeout for reads only (GET and HEAD: repeating them changes nothing). A server
that stays away is :class:`ServerUnreachable` (exit 4).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flightctl.cli.client import logins
from flightctl.cli.client.config import TOKEN_ENV, ClientConfig
from flightctl.cli.client.errors import CliError, ServerUnreachable

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
MAX_PAGE = 1000  # the server's cap on ``limit``
# The first retry is immediate (a keep-alive connection closed by the server is the common
# case), then 1, 2 and 4 s: a server restarting under a watch is waited for ~7 s. TLS and other
# errors are not retried (``other=0``), nor are HTTP answers (``status=0``).
RETRIES = Retry(total=5, connect=4, read=4, other=0, status=0, redirect=0,
                allowed_methods=frozenset({"GET", "HEAD"}), backoff_factor=0.5, backoff_max=4,
                raise_on_status=False)


class ApiError(CliError):
    """The server answered with an error ``Status``; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ApiClient:
    """Talks to the user API described by a :class:`ClientConfig`."""

    def __init__(self, config: ClientConfig, *, timeout: float | None = None,
                 organization: str | None = None):
        self.config = config
        self.base = config.server.rstrip("/")
        self.timeout = timeout or DEFAULT_TIMEOUT
        self.organization = organization or config.organization
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=RETRIES)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # REQUESTS_CA_BUNDLE in the environment would silently replace our CA or our
        # ``verify=False``; the config file, not the environment, decides whom we trust.
        self.session.trust_env = False
        self.verify = self._verify()

    def _verify(self):
        if self.config.insecure_skip_tls_verify:
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            return False
        pem = self.config.ca_pem()
        if pem is None:
            # Not trusting the environment's proxies is deliberate, but the system CA bundle
            # still applies to servers with publicly trusted certificates.
            return os.environ.get("REQUESTS_CA_BUNDLE") or True
        # requests wants a file; keep it for the life of the process.
        handle = tempfile.NamedTemporaryFile(prefix="flightctl-ca-", suffix=".pem", delete=False)
        handle.write(pem)
        handle.close()
        self._ca_file = handle.name
        return handle.name

    def close(self) -> None:
        ca_file = getattr(self, "_ca_file", None)
        if ca_file:
            try:
                os.unlink(ca_file)
            except OSError:
                pass
        self.session.close()

    # -- requests -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                content_type: str = "application/json", api_version: str = "v1beta1",
                auth: bool = True, token: str | None = None, ok=(200, 201, 204),
                timeout: float | None = None) -> requests.Response:
        """Send one request; raise :class:`ApiError` unless the code is in ``ok``."""
        refreshable = auth and token is None and self._refreshable()
        if refreshable and logins.needs_refresh(self.config):
            logins.refresh(self, self.config)
            refreshable = False
        response = self._send(method, path, params=params, body=body, content_type=content_type,
                              api_version=api_version, auth=auth, token=token, timeout=timeout)
        if response.status_code == 401 and refreshable:
            # Revoked early or the clock is off: one refresh, one more try.
            logins.refresh(self, self.config)
            response = self._send(method, path, params=params, body=body,
                                  content_type=content_type, api_version=api_version,
                                  auth=auth, token=token, timeout=timeout)
        if response.status_code not in ok:
            raise self._error(response)
        return response

    def _refreshable(self) -> bool:
        """A provider's token from the config (not one given on the command line)."""
        return bool(self.config.refresh_token and self.config.auth_provider
                    and not os.environ.get(TOKEN_ENV))

    def _send(self, method: str, path: str, *, params, body, content_type: str,
              api_version: str, auth: bool, token: str | None,
              timeout: float | None) -> requests.Response:
        url = self.base + (path if path.startswith("/") else f"{API_PREFIX}/{path}")
        headers = {"Flightctl-API-Version": api_version, "Accept": "application/json"}
        bearer = token if token is not None else self.config.token
        if auth and bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        if self.organization and auth:
            query.setdefault("org_id", self.organization)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        try:
            response = self.session.request(method, url, params=query, data=data,
                                            headers=headers, verify=self.verify,
                                            timeout=timeout or self.timeout)
        except requests.exceptions.SSLError as exc:
            raise CliError(f"TLS verification of {self.base} failed ({_reason(exc)}): pass "
                           "--certificate-authority CA.crt to 'flightctl login', or -k to skip "
                           "verification") from None
        except requests.exceptions.Timeout:
            raise ServerUnreachable(f"the server at {self.base} did not answer within "
                                    f"{timeout or self.timeout:g}s") from None
        except requests.exceptions.ConnectionError as exc:
            raise ServerUnreachable(f"cannot reach the server at {self.base}: "
                                    f"{_reason(exc)}") from None
        except requests.exceptions.RequestException as exc:
            raise CliError(f"request to {url} failed: {_reason(exc)}") from None
        return response

    def _error(self, response: requests.Response) -> ApiError:
        code = response.status_code
        message = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                message = str(body.get("message") or body.get("error_description")
                              or body.get("error") or "")
        except ValueError:
            message = response.text.strip()[:200]
        # Validation messages are joined with newlines; the CLI promises one line.
        message = "; ".join(line.strip() for line in message.splitlines() if line.strip())
        status = f"{code} {response.reason or ''}".strip()
        if code == 401:
            return ApiError(code, f"the server refused the credentials ({status}"
                                  f"{': ' + message if message else ''}); the token may have "
                                  "expired: log in again with 'flightctl login'")
        if code == 406:
            return ApiError(code, f"the server does not support this API version: {message}")
        return ApiError(code, f"{message} ({status})" if message else status)

    def get_json(self, path: str, **kwargs) -> Any:
        response = self.request("GET", path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return _json(response)

    def send_json(self, method: str, path: str, body: Any, **kwargs) -> Any:
        response = self.request(method, path, body=body, **kwargs)
        return _json(response) if response.content else None

    def list_pages(self, path: str, params: dict, *, limit: int = 0, follow: bool = True,
                   api_version: str = "v1beta1") -> dict:
        """List a collection; with ``follow``, walk ``continue`` tokens and merge the pages.

        ``limit`` 0 means everything (pages of 1000). The merged list keeps the envelope of
        the first page, with the items of all pages and the metadata of the last one.
        """
        params = dict(params)
        wanted = limit
        page_size = limit if 0 < limit <= MAX_PAGE else (MAX_PAGE if follow else limit)
        if page_size:
            params["limit"] = page_size
        first = self.get_json(path, params=params, api_version=api_version)
        if not follow or not isinstance(first, dict):
            return first
        items = list(first.get("items") or [])
        meta = first.get("metadata") or {}
        while meta.get("continue") and (wanted == 0 or wanted > MAX_PAGE) and (
                wanted == 0 or len(items) < wanted):
            params["continue"] = meta["continue"]
            page = self.get_json(path, params=params, api_version=api_version) or {}
            items.extend(page.get("items") or [])
            meta = page.get("metadata") or {}
        if wanted > MAX_PAGE:
            items = items[:wanted]
        merged = dict(first)
        merged["items"] = items
        merged["metadata"] = meta
        return merged


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise CliError(f"the server sent an answer that is not JSON "
                       f"({response.status_code}, {response.headers.get('Content-Type')})"
                       ) from None


def _reason(exc: Exception) -> str:
    """The innermost, human part of a requests/urllib3 error chain."""
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "certificate verify failed", "timed out", "Temporary failure in name"):
        if marker in text:
            return marker.lower() if marker != "certificate verify failed" else marker
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)
    return str(reason or inner).splitlines()[0][:200]
