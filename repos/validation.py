"""Validation of Repository and ResourceSync specs (api.md §2.4, §2.5).

Secret fields are checked for type and presence only and never quoted in an error message:
error messages end up in responses and logs.
"""

from __future__ import annotations

import base64
import binascii
import re

from flightctl.api.validation import Errors
from repos import guards
from repos.choices import MASK, AccessMode, OciScheme, RepoType, ResourceSyncType

HTTP_KEYS = ("username", "password", "tls.crt", "tls.key", "ca.crt", "skipServerVerification",
             "token")
SSH_KEYS = ("sshPrivateKey", "privateKeyPassphrase", "skipServerVerification")
TOP_KEYS = {
    RepoType.GIT: ("type", "url", "httpConfig", "sshConfig"),
    RepoType.HTTP: ("type", "url", "httpConfig", "validationSuffix"),
    RepoType.OCI: ("type", "registry", "scheme", "accessMode", "ociAuth", "ca.crt",
                   "skipServerVerification", "baseImages"),
}
SECRETS = {"password", "token", "tls.key", "tls.crt", "sshPrivateKey", "privateKeyPassphrase"}
_REGISTRY_RE = re.compile(
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*"
    r"[A-Za-z0-9])?)*)(:\d{1,5})?$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
# A repository name of the OCI distribution spec: path components of lower-case alphanumerics
# joined by '.', '_', '__' or dashes. Stricter than the reference's length check, so that a
# name can never carry '..', '?' or '#' into the registry URL it is pasted into.
_IMAGE_NAME_RE = re.compile(
    r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
# No file:// (nor local paths): a repository must not read the server's own disk.
_URL_SCHEMES = ("http://", "https://", "ssh://", "git://")
_SCP_LIKE_RE = re.compile(r"^[\w.-]+@[\w.-]+:.+")


def _unknown(errors: Errors, path: str, obj: dict, known) -> None:
    for key in obj:
        if key not in known:
            errors.invalid(path, key, f'unknown field "{key}"')


def _string(errors: Errors, path: str, value, key: str) -> None:
    if value is not None and not isinstance(value, str):
        # Never echo a secret, even a mistyped one.
        errors.invalid(path, "<redacted>" if key in SECRETS else value, "must be a string")


def _base64(errors: Errors, path: str, value, key: str) -> None:
    if isinstance(value, str) and value != MASK:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            errors.invalid(path, "<redacted>" if key in SECRETS else value,
                           "must be base64-encoded")


def _bool(errors: Errors, path: str, value) -> None:
    if value is not None and not isinstance(value, bool):
        errors.invalid(path, value, "must be a boolean")


def _http_config(errors: Errors, path: str, value) -> None:
    if not isinstance(value, dict):
        errors.invalid(path, "<object>", "must be an object")
        return
    _unknown(errors, path, value, HTTP_KEYS)
    for key in ("username", "password", "token", "tls.crt", "tls.key", "ca.crt"):
        _string(errors, f"{path}.{key}", value.get(key), key)
    for key in ("tls.crt", "tls.key", "ca.crt"):
        _base64(errors, f"{path}.{key}", value.get(key), key)
    _bool(errors, f"{path}.skipServerVerification", value.get("skipServerVerification"))
    if ("username" in value) != ("password" in value):
        errors.required(f"{path}.username" if "password" in value else f"{path}.password",
                        "username and password must be given together")
    if ("tls.crt" in value) != ("tls.key" in value):
        errors.required(f"{path}.tls.crt" if "tls.key" in value else f"{path}.tls.key",
                        "tls.crt and tls.key must be given together")


def _ssh_config(errors: Errors, path: str, value) -> None:
    if not isinstance(value, dict):
        errors.invalid(path, "<object>", "must be an object")
        return
    _unknown(errors, path, value, SSH_KEYS)
    for key in ("sshPrivateKey", "privateKeyPassphrase"):
        _string(errors, f"{path}.{key}", value.get(key), key)
    _base64(errors, f"{path}.sshPrivateKey", value.get("sshPrivateKey"), "sshPrivateKey")
    _bool(errors, f"{path}.skipServerVerification", value.get("skipServerVerification"))
    if "privateKeyPassphrase" in value and "sshPrivateKey" not in value:
        errors.required(f"{path}.sshPrivateKey", "privateKeyPassphrase requires sshPrivateKey")


def _url(errors: Errors, path: str, value, *, git: bool) -> None:
    if not isinstance(value, str) or not value:
        errors.required(path)
        return
    if value.startswith(_URL_SCHEMES[:2] if not git else _URL_SCHEMES):
        problem = guards.url_userinfo_problem(value)
        if problem:
            errors.invalid(path, scrub_url(value), problem)
        return
    if git and _SCP_LIKE_RE.match(value):
        return
    errors.invalid(path, value, "must be a URL" + (" (http, https, ssh, git or "
                                                   "user@host:path)" if git else " (http, https)"))


def _oci(errors: Errors, spec: dict) -> None:
    registry = spec.get("registry")
    if not isinstance(registry, str) or not registry:
        errors.required("spec.registry")
    elif not _REGISTRY_RE.match(registry):
        errors.invalid("spec.registry", registry,
                       "must be a hostname, FQDN, IPv4 or [IPv6] address with an optional port")
    scheme = spec.get("scheme")
    if scheme is not None and scheme not in OciScheme.values:
        errors.unsupported("spec.scheme", scheme, OciScheme.values)
    mode = spec.get("accessMode")
    if mode is not None and mode not in AccessMode.values:
        errors.unsupported("spec.accessMode", mode, AccessMode.values)
    _string(errors, "spec.ca.crt", spec.get("ca.crt"), "ca.crt")
    _base64(errors, "spec.ca.crt", spec.get("ca.crt"), "ca.crt")
    _bool(errors, "spec.skipServerVerification", spec.get("skipServerVerification"))
    auth = spec.get("ociAuth")
    if auth is not None:
        if not isinstance(auth, dict):
            errors.invalid("spec.ociAuth", "<object>", "must be an object")
        else:
            _unknown(errors, "spec.ociAuth", auth, ("authType", "username", "password"))
            if auth.get("authType") != "docker":
                errors.unsupported("spec.ociAuth.authType", auth.get("authType"), ["docker"])
            for key in ("username", "password"):
                if not isinstance(auth.get(key), str):
                    errors.required(f"spec.ociAuth.{key}")
    images = spec.get("baseImages")
    if images is not None:
        if not isinstance(images, list):
            errors.invalid("spec.baseImages", images, "must be an array")
            return
        names: set = set()
        for index, image in enumerate(images):
            path = f"spec.baseImages[{index}]"
            if not isinstance(image, dict):
                errors.invalid(path, image, "must be an object")
                continue
            name = image.get("imageName")
            if not isinstance(name, str) or not 1 <= len(name) <= 255:
                errors.invalid(f"{path}.imageName", name, "must be 1 to 255 characters")
            elif name in names:
                errors.duplicate(f"{path}.imageName", name)
            else:
                names.add(name)
            tags = image.get("tags")
            if not isinstance(tags, list) or not tags:
                errors.required(f"{path}.tags", "must have at least 1 item")
                continue
            if len(set(map(str, tags))) != len(tags):
                errors.invalid(f"{path}.tags", tags, "must be unique")
            for t_index, tag in enumerate(tags):
                if not isinstance(tag, str) or not _TAG_RE.match(tag):
                    errors.invalid(f"{path}.tags[{t_index}]", tag,
                                   f"must match '{_TAG_RE.pattern}'")


def scrub_url(url: str) -> str:
    """``url`` without its userinfo, for error messages."""
    scheme, sep, rest = url.partition("://")
    host_part, slash, path = rest.partition("/")
    return f"{scheme}{sep}{host_part.rpartition('@')[2]}{slash}{path}"


def validate_repository_spec(spec: dict, errors: Errors) -> None:
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in RepoType.values:
        errors.unsupported("spec.type", kind, RepoType.values)
        return
    _unknown(errors, "spec", spec, TOP_KEYS[RepoType(kind)])
    _guard_plain_http(errors, spec)
    if kind == RepoType.OCI:
        _oci(errors, spec)
        return
    _url(errors, "spec.url", spec.get("url"), git=kind == RepoType.GIT)
    if "httpConfig" in spec:
        _http_config(errors, "spec.httpConfig", spec["httpConfig"])
    if kind == RepoType.GIT and "sshConfig" in spec:
        if "httpConfig" in spec:
            errors.forbidden("spec", "httpConfig and sshConfig may not both be given")
        _ssh_config(errors, "spec.sshConfig", spec["sshConfig"])
    if kind == RepoType.HTTP:
        _string(errors, "spec.validationSuffix", spec.get("validationSuffix"),
                "validationSuffix")


def _guard_plain_http(errors: Errors, spec: dict) -> None:
    problem = guards.plain_http_problem(spec)
    if problem:
        errors.forbidden(*problem)


def validate_resource_sync_spec(spec: dict, errors: Errors) -> None:
    _unknown(errors, "spec", spec, ("type", "repository", "targetRevision", "path"))
    kind = spec.get("type")
    if kind is not None and kind not in ResourceSyncType.values:
        errors.unsupported("spec.type", kind, ResourceSyncType.values)
    repository = spec.get("repository")
    if not isinstance(repository, str) or not repository:
        errors.required("spec.repository")
    else:
        errors.dns1123_subdomain("spec.repository", repository)
    revision = spec.get("targetRevision")
    if not isinstance(revision, str) or not revision:
        errors.required("spec.targetRevision")
    elif len(revision) > 244:
        errors.too_long("spec.targetRevision", revision, 244)
    path = spec.get("path")
    if not isinstance(path, str):
        errors.required("spec.path")
    elif len(path) > 2048:
        errors.too_long("spec.path", path, 2048)
    elif ".." in path.split("/"):
        errors.invalid("spec.path", path, "must not leave the repository")


def parse_oci_check(body, *, with_tag: bool) -> tuple[str, str | None]:
    """``(imageName, tag)`` of a ``CheckRepositoryOciTagRequest`` (``with_tag``) or
    ``CheckRepositoryOciImageRequest``; ValueError with the field errors otherwise."""
    errors = Errors()
    if not isinstance(body, dict):
        raise ValueError("request body: Invalid value: must be an object")
    known = ("imageName", "tag") if with_tag else ("imageName",)
    for key in body:
        if key not in known:
            errors.invalid(key, key, f'unknown field "{key}"')
    image = body.get("imageName")
    if not isinstance(image, str) or not image:
        errors.required("imageName")
    elif len(image) > 255:
        errors.too_long("imageName", image, 255)
    elif not _IMAGE_NAME_RE.match(image):
        errors.invalid("imageName", image, "must be a repository name within the registry, "
                       "e.g. 'centos-bootc/centos-bootc'")
    tag = body.get("tag")
    if with_tag:
        if not isinstance(tag, str) or not tag:
            errors.required("tag")
        elif not _TAG_RE.match(tag):
            errors.invalid("tag", tag, f"must match '{_TAG_RE.pattern}'")
    if errors:
        raise ValueError("\n".join(errors))
    return image, tag
