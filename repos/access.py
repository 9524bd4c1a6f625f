"""Can the server reach a repository with its credentials? And HTTP fetches with them.

git: ``git ls-remote`` of ``HEAD``; http: GET ``url + validationSuffix``; oci: the registry's
``/v2/`` endpoint, following a ``Basic`` or ``Bearer`` (token service) challenge the way
container clients do. Messages name the root cause and never contain a credential.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import requests

from repos import git, guards
from repos.choices import RepoType

TIMEOUT = 30
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class AccessError(RuntimeError):
    """The repository cannot be used; the message says why (no credentials in it), and
    ``status_code`` is the HTTP status behind it when there was one."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


@contextmanager
def http_options(config: dict):
    """``requests`` keyword arguments for an ``HttpConfig`` (or an OCI spec's TLS fields).

    ``verify`` is always passed explicitly: ``REQUESTS_CA_BUNDLE`` in the environment would
    otherwise silently replace a custom CA or ``skipServerVerification``.
    """
    private = Path(tempfile.mkdtemp(prefix="fctl-http-"))
    os.chmod(private, 0o700)
    try:
        options: dict = {"headers": {}, "timeout": TIMEOUT, "verify": True}
        if config.get("username") is not None:
            options["auth"] = (config["username"], config.get("password") or "")
        elif config.get("token"):
            options["headers"]["Authorization"] = f"Bearer {config['token']}"
        if config.get("tls.crt"):
            crt = private / "tls.crt"
            key = private / "tls.key"
            for path, field in ((crt, "tls.crt"), (key, "tls.key")):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(base64.b64decode(config[field]))
            options["cert"] = (str(crt), str(key))
        if config.get("ca.crt"):
            ca = private / "ca.crt"
            ca.write_bytes(base64.b64decode(config["ca.crt"]))
            options["verify"] = str(ca)
        if config.get("skipServerVerification"):
            options["verify"] = False
        yield options
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _describe(exc: requests.RequestException) -> str:
    # requests wraps the root cause several levels deep; the innermost reason is the useful one.
    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    text = str(getattr(cause, "reason", None) or cause)
    return git.scrub(text)[:300]


def http_get(config: dict, url: str) -> requests.Response:
    """GET ``url`` with ``config``'s credentials; AccessError unless it answers 2xx (or the
    rules of :mod:`repos.guards` forbid sending them there)."""
    if guards.url_userinfo_problem(url):
        raise AccessError(f"refusing to use the URL: it {guards.MSG_USERINFO}")
    plain = guards.plain_http_problem({"type": "http", "url": url, "httpConfig": config})
    if plain:
        raise AccessError(f"refusing to use the repository: {plain[1]}")
    with http_options(config) as options:
        try:
            # A fresh session without environment proxies or netrc: the repository's own
            # credentials and TLS settings are the only ones that apply.
            with requests.Session() as session:
                session.trust_env = False
                response = session.get(url, allow_redirects=True, **options)
        except requests.exceptions.SSLError as exc:
            raise AccessError(f"TLS error talking to {git.scrub(url)}: {_describe(exc)}")
        except requests.RequestException as exc:
            raise AccessError(f"cannot reach {git.scrub(url)}: {_describe(exc)}")
    if not response.ok:
        raise AccessError(f"GET {git.scrub(url)} answered {response.status_code} "
                          f"{response.reason}")
    return response


def check(spec: dict) -> None:
    """Raise AccessError unless the repository (spec with secrets in clear) is usable."""
    kind = spec.get("type")
    if kind == RepoType.GIT:
        try:
            git.ls_remote(spec, "HEAD", timeout=TIMEOUT)
        except git.GitError as exc:
            raise AccessError(str(exc))
    elif kind == RepoType.HTTP:
        http_get(spec.get("httpConfig") or {}, spec["url"] + (spec.get("validationSuffix") or ""))
    elif kind == RepoType.OCI:
        check_oci(spec)
    else:
        raise AccessError(f"unsupported repository type {kind!r}")


def check_oci(spec: dict) -> None:
    response = registry_get(spec, "/v2/")
    if response.status_code == 401:
        raise AccessError(f"registry {spec['registry']} rejected the credentials "
                          "(401 Unauthorized)")
    if not response.ok:
        raise AccessError(f"registry {spec['registry']} answered {response.status_code} "
                          f"{response.reason}")


# What a container client accepts for a tag: image indexes and manifests, OCI and Docker.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
))
_REFUSALS = {401: "the registry rejected the credentials", 403: "access denied",
             404: "not found"}


def check_oci_tag(spec: dict, image: str, tag: str) -> dict:
    """``CheckRepositoryOciResult`` for ``image:tag`` in an OCI Repository's registry: the
    manifest exists (a ``HEAD``, as ``docker manifest inspect`` would ask)."""
    return _oci_result(spec, f"{image}:{tag}", "HEAD", f"/v2/{image}/manifests/{tag}",
                       {"Accept": MANIFEST_TYPES})


def check_oci_image(spec: dict, image: str) -> dict:
    """``CheckRepositoryOciResult`` for ``image``: the registry lists its tags to us."""
    return _oci_result(spec, image, "GET", f"/v2/{image}/tags/list")


def _oci_result(spec: dict, what: str, method: str, path: str, headers=None) -> dict:
    where = f"{spec['registry']}/{what}"
    try:
        response = registry_get(spec, path, method=method, headers=headers)
    except AccessError as exc:
        result = {"accessible": False, "errorMessage": f"{where}: {exc}"}
        if exc.status_code is not None:
            result["errorCode"] = exc.status_code
        return result
    if response.ok:
        return {"accessible": True}
    code = response.status_code
    reason = _REFUSALS.get(code, f"the registry answered {code} {response.reason}")
    return {"accessible": False, "errorCode": code, "errorMessage": f"{where}: {reason}"}


def registry_get(spec: dict, path: str, *, method: str = "GET",
                 headers: dict | None = None) -> requests.Response:
    """``method path`` on an OCI Repository's registry, answering its ``Basic`` or ``Bearer``
    challenge with the Repository's credentials the way container clients do; the registry's
    final response, whatever its status. AccessError when the registry cannot be reached or
    cannot be authenticated to, or its credentials would go over plain HTTP."""
    plain = guards.plain_http_problem(spec)
    if plain:
        raise AccessError(f"refusing to use the registry: {plain[1]}")
    auth = spec.get("ociAuth") or {}
    creds = (auth["username"], auth["password"]) if auth.get("username") else None
    tls = {"ca.crt": spec.get("ca.crt"),
           "skipServerVerification": spec.get("skipServerVerification")}
    url = f"{spec.get('scheme') or 'https'}://{spec['registry']}{path}"
    with http_options(tls) as options, requests.Session() as session:
        session.trust_env = False
        options["headers"].update(headers or {})
        try:
            response = session.request(method, url, **options)
            if response.status_code == 401:
                challenge = response.headers.get("WWW-Authenticate", "")
                scheme = challenge.split(" ", 1)[0].lower()
                if scheme == "basic":
                    if creds is None:
                        raise AccessError(f"{spec['registry']} requires credentials",
                                          status_code=401)
                    response = session.request(method, url, auth=creds, **options)
                elif scheme == "bearer":
                    token = _registry_token(session, challenge, creds, options)
                    response = session.request(method, url, **{**options, "headers": {
                        **options["headers"], "Authorization": f"Bearer {token}"}})
        except requests.RequestException as exc:
            raise AccessError(f"cannot reach registry {spec['registry']}: {_describe(exc)}")
    return response


def _registry_token(session, challenge: str, creds, options: dict) -> str:
    params = dict(_CHALLENGE_RE.findall(challenge))
    realm = params.pop("realm", None)
    if not realm:
        raise AccessError("the registry's Bearer challenge names no token realm")
    response = session.get(realm, params=params, auth=creds,
                           **{**options, "headers": {}})  # not the registry's Accept headers
    if response.status_code == 401:
        raise AccessError("the registry's token service rejected the credentials",
                          status_code=401)
    if not response.ok:
        raise AccessError(f"the registry's token service answered {response.status_code}",
                          status_code=response.status_code)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AccessError("the registry's token service did not answer with a JSON object")
    token = body.get("token") or body.get("access_token")
    if not token:
        raise AccessError("the registry's token service returned no token")
    return token
