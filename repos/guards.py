"""Where a Repository's credentials may go: the rules checked when a spec is written and again
each time the server is about to use it.

* No credentials inside a URL (``https://user:pass@host/``): a URL is shown to every role that
  may read the Repository and ends up on the ``git`` command line (``ps``). Credentials belong
  in ``httpConfig`` (a bare SSH user name, ``ssh://git@host/``, is not a credential).
* No credentials over plain HTTP, unless the host is named in the
  ``plain_http_credential_hosts`` setting (loopback by default): on the wire they would be
  readable by anyone in between.
* A stored secret is only ever sent to the destination it was given for: a spec that changes
  the destination must carry the secret again instead of ``*****`` (see
  :func:`destination_change`).

The messages name the rule and the field, never a secret.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from repos.choices import MASK, SECRET_FIELDS, RepoType

MSG_USERINFO = ("must not contain credentials (user:password@); give them in "
                "spec.httpConfig.username and spec.httpConfig.password")
_HTTP_CREDENTIALS = ("username", "password", "token", "tls.crt", "tls.key")


def url_userinfo_problem(url) -> str | None:
    """Why ``url`` may not be stored or used because it carries credentials, or None."""
    if not isinstance(url, str) or "://" not in url:
        return None  # scp-like "user@host:path" has a user name only
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # not a URL at all: the URL check says so
    if "@" not in parts.netloc:
        return None
    userinfo = parts.netloc.rpartition("@")[0]
    if parts.scheme in ("http", "https") or ":" in userinfo:
        return MSG_USERINFO
    return None


def mask_url(url):
    """``url`` with the password of its userinfo shown as ``*****`` (a row stored before
    userinfo was refused must not show it to every reader)."""
    if not isinstance(url, str) or "@" not in url or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:{MASK}{at}{host}{slash}{path}"


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def allowed_plain_http_host(host: str) -> bool:
    allowed = {h.strip("[]").lower() for h in settings.FLIGHTCTL.plain_http_credential_hosts}
    return host.strip("[]").lower() in allowed


def plain_http_problem(spec: dict) -> tuple[str, str] | None:
    """``(field, message)`` when ``spec`` would send credentials over plain HTTP to a host
    not allowed for it; None when it is fine."""
    spec = spec or {}
    kind = spec.get("type")
    if kind == RepoType.OCI:
        auth = spec.get("ociAuth")
        if spec.get("scheme") != "http" or not isinstance(auth, dict) or not auth:
            return None
        host = _host(f"//{spec.get('registry') or ''}")
        field, where = "spec.scheme", f"registry {spec.get('registry')}"
    elif kind in (RepoType.GIT, RepoType.HTTP):
        url = spec.get("url")
        config = spec.get("httpConfig")
        if not isinstance(url, str) or not url.lower().startswith("http://"):
            return None
        if not isinstance(config, dict) or not any(config.get(k) for k in _HTTP_CREDENTIALS):
            return None
        host, field, where = _host(url), "spec.url", f"host {_host(url)}"
    else:
        return None
    if allowed_plain_http_host(host):
        return None
    return field, (f"credentials would be sent over plain HTTP to {where}: use https, or "
                   "name the host in the plain_http_credential_hosts setting")


def destination(spec: dict) -> tuple:
    """What a Repository's credentials are presented to."""
    spec = spec or {}
    return (spec.get("type"), spec.get("url"), spec.get("registry"),
            spec.get("scheme") or "https")


def masked_fields(spec: dict) -> list[str]:
    """The secret fields of ``spec`` sent back as ``*****`` (keep the stored value)."""
    found = []
    for section, key in SECRET_FIELDS:
        part = (spec or {}).get(section)
        if isinstance(part, dict) and part.get(key) == MASK:
            found.append(f"spec.{section}.{key}")
    return found


def destination_change(old: dict | None, new: dict) -> str | None:
    """Why ``new`` may not keep ``old``'s stored secrets, or None: its destination differs
    and it sends ``*****`` for a secret (a caller who has only seen the mask would otherwise
    hand the stored credentials to a host of their choosing)."""
    if old is None or destination(old) == destination(new):
        return None
    masked = masked_fields(new)
    if not masked:
        return None
    return (f'{", ".join(masked)}: Invalid value: "{MASK}": the repository\'s destination '
            "(url, registry or scheme) changed, so the secret must be given again")
