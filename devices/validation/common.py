"""Shared building blocks for DeviceSpec validation.

A DeviceSpec arrives as plain JSON (dicts, lists, strings, numbers), so every validator first
checks the JSON type of a value and then its format. This module holds the pieces that several
parts of the spec need: the :class:`SpecContext` that carries the error collector and the
"is this a fleet template?" switch, JSON type guards, Go-style duration parsing/formatting,
base64 decoding with Go-like error text, device path rules and OCI image references.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from flightctl.api.validation import Errors
from flightctl.templating import TemplateError, has_placeholders, validate

MAX_INLINE_BYTES = 1024 * 1024
ENCODINGS = ("plain", "base64")

# Paths the agent owns: config providers may never write there (agent.md §10.3, api.md §3.2).
FORBIDDEN_DEVICE_PATH_ROOTS: tuple[str, ...] = (
    "/var/lib/flightctl",
    "/usr/lib/flightctl",
    "/etc/flightctl/certs",
)
AGENT_CONFIG_FILES: tuple[str, ...] = ("/etc/flightctl/config.yaml", "/etc/flightctl/config.yml")

_PLACEHOLDER_RE = re.compile(r"\{\{.*?\}\}", re.DOTALL)


@dataclass
class SpecContext:
    """State of one DeviceSpec validation pass."""

    errors: Errors
    fleet_template: bool = False

    def templated(self, path: str, value) -> bool:
        """Return True when ``value`` is a fleet-template string carrying placeholders.

        Only called for the fields where api.md §6 allows placeholders. The template itself is
        checked here; the caller then skips the format checks a placeholder would break.
        """
        if not self.fleet_template or not isinstance(value, str):
            return False
        if not has_placeholders(value):
            return False
        try:
            validate(value)
        except TemplateError as exc:
            self.errors.invalid(path, value, str(exc))
        return True


# -- JSON type guards --------------------------------------------------------------------------


def is_int(value) -> bool:
    """JSON integers; bool is an int subclass in Python but never one on the wire."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_object(errors: Errors, path: str, value) -> dict | None:
    if isinstance(value, dict):
        return value
    errors.invalid(path, value, "must be an object")
    return None


def as_list(errors: Errors, path: str, value) -> list | None:
    if isinstance(value, list):
        return value
    errors.invalid(path, value, "must be an array")
    return None


def as_string(errors: Errors, path: str, value, *, required: bool = False) -> str | None:
    """Return the string, or None after reporting a missing/ill-typed value."""
    if value is None or (required and value == ""):
        if required:
            errors.required(path)
        return None
    if not isinstance(value, str):
        errors.invalid(path, value, "must be a string")
        return None
    return value


def check_max_len(errors: Errors, path: str, value: str, max_len: int) -> bool:
    if len(value) > max_len:
        errors.too_long(path, value, max_len)
        return False
    return True


def reject_unknown_keys(errors: Errors, path: str, obj: dict, known: Iterable[str]) -> None:
    known = set(known)
    for key in obj:
        if key not in known:
            errors.invalid(path, key, f'unknown field "{key}"')


def one_of_keys(errors: Errors, path: str, obj: dict, keys: tuple[str, ...]) -> str | None:
    """Infer a oneOf variant from the single key that is present (None when ambiguous)."""
    present = [k for k in keys if obj.get(k) is not None]
    if len(present) == 1:
        return present[0]
    choices = ", ".join(keys)
    if not present:
        errors.required(path, f"must specify exactly one of: {choices}")
    else:
        errors.invalid(path, present, f"must specify exactly one of: {choices}")
    return None


def check_enum(errors: Errors, path: str, value, allowed: Iterable[str], *, required=False) -> bool:
    allowed = list(allowed)
    if value is None:
        if required:
            errors.required(path, "supported values: " + ", ".join(allowed))
        return not required
    if value not in allowed:
        errors.unsupported(path, value, allowed)
        return False
    return True


def short(value: str, limit: int = 64) -> str:
    """Shorten potentially huge values (file contents) before echoing them in an error."""
    return value if len(value) <= limit else value[:limit] + "..."


# -- durations ---------------------------------------------------------------------------------

_GO_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_GO_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_SIMPLE_DURATION_RE = re.compile(r"^(\d+)([smh])$")


def parse_go_duration(text: str) -> float | None:
    """Parse a Go ``time.ParseDuration`` string into seconds; None when malformed."""
    if not isinstance(text, str) or not text:
        return None
    sign, rest = (-1.0, text[1:]) if text[0] == "-" else (1.0, text.lstrip("+"))
    if rest == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(rest):
        match = _GO_DURATION_RE.match(rest, pos)
        if not match or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return sign * total if rest else None


def parse_simple_duration(text: str) -> int | None:
    """Seconds of the API's ``<int>[smh]`` durations (monitor intervals)."""
    match = _SIMPLE_DURATION_RE.match(text) if isinstance(text, str) else None
    if not match:
        return None
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def format_go_duration(seconds: float) -> str:
    """Render seconds the way Go's ``Duration.String()`` does (``90s`` -> ``1m30s``)."""
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    hours, rem = divmod(int(seconds), 3600)
    minutes, secs = divmod(rem, 60)
    frac = seconds - int(seconds)
    sec_text = f"{secs + frac:g}" if frac else str(secs)
    if hours:
        return f"{sign}{hours}h{minutes}m{sec_text}s"
    if minutes:
        return f"{sign}{minutes}m{sec_text}s"
    return f"{sign}{sec_text}s"


# -- base64 ------------------------------------------------------------------------------------

_B64_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def decode_base64(text: str) -> bytes:
    """Decode standard padded base64 like Go's ``StdEncoding`` (CR/LF ignored).

    Raises ValueError("illegal base64 data at input byte N") so messages match the reference.
    """
    data = text.replace("\r", "").replace("\n", "")
    for index, char in enumerate(data):
        if char == "=":
            break
        if char not in _B64_ALPHABET:
            raise ValueError(f"illegal base64 data at input byte {index}")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        offset = len(data) - len(data) % 4 if len(data) % 4 else max(len(data) - 1, 0)
        raise ValueError(f"illegal base64 data at input byte {offset}") from None


def check_inline_content(
    ctx: SpecContext, path: str, content, encoding, *, template_ok: bool
) -> bytes | None:
    """Validate content + contentEncoding shared by config files and app contents.

    Returns the decoded bytes (None when they cannot be known). Placeholders are allowed in
    fleet templates, either in plain content or inside the decoded base64 payload.
    """
    errors = ctx.errors
    if not check_enum(errors, f"{path}.contentEncoding", encoding, ENCODINGS):
        return None
    content = as_string(errors, f"{path}.content", content)
    if content is None:
        return b""
    content_path = f"{path}.content"
    if encoding == "base64":
        if template_ok and ctx.templated(content_path, content):
            return None
        try:
            raw = decode_base64(content)
        except ValueError as exc:
            errors.invalid(content_path, short(content), f"decode base64 content: {exc}")
            return None
        if template_ok:
            ctx.templated(content_path, raw.decode("utf-8", errors="replace"))
    else:
        raw = content.encode("utf-8")
        if template_ok:
            ctx.templated(content_path, content)
    if len(raw) > MAX_INLINE_BYTES:
        errors.too_long(content_path, raw, MAX_INLINE_BYTES)
    return raw


# -- paths -------------------------------------------------------------------------------------


def go_clean(path: str) -> str:
    """``filepath.Clean`` semantics (POSIX normpath keeps a leading '//', Go does not)."""
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def check_absolute_path(errors: Errors, path: str, value) -> bool:
    if not isinstance(value, str) or not value:
        errors.invalid(path, value if value is not None else "", "must be an absolute path")
        return False
    ok = True
    if len(value) > 4096:
        errors.invalid(path, value, "must be less than 4096 characters")
        ok = False
    if not value.startswith("/"):
        errors.invalid(path, value, "must be an absolute path")
        return False
    if go_clean(value) != value:
        errors.invalid(
            path, value, "must be clean (without consecutive separators, . or .. elements)"
        )
        ok = False
    return ok


def forbidden_path_reason(value: str) -> str | None:
    """Why a device path is reserved for the agent, or None when writing it is fine."""
    clean = go_clean(value)
    for root in FORBIDDEN_DEVICE_PATH_ROOTS:
        if clean == root or clean.startswith(root + "/"):
            return f'writing under "{root}" is not allowed'
    if clean in AGENT_CONFIG_FILES:
        return "writing agent config file is not allowed"
    return None


def check_device_path(errors: Errors, path: str, value) -> bool:
    """A file the agent writes on the device: absolute, clean, no ':' and not agent-owned."""
    if not check_absolute_path(errors, path, value):
        return False
    if ":" in value:
        errors.invalid(path, value, "forbidden device path: must not contain ':'")
        return False
    reason = forbidden_path_reason(value)
    if reason:
        errors.invalid(path, value, f"forbidden device path: {reason}")
        return False
    return True


def check_relative_path(errors: Errors, path: str, value, max_len: int = 253) -> bool:
    if not isinstance(value, str) or not value:
        errors.invalid(path, value if value is not None else "", "must be a relative path")
        return False
    before = len(errors.messages)
    if len(value) > max_len:
        errors.invalid(path, value, f"must be less than max characters: {max_len}")
    if value.startswith("/"):
        errors.invalid(path, value, "must be a relative path")
    if value.startswith("..") or "/../" in value:
        errors.invalid(path, value, "must not contain '..' (parent directory references)")
    elif go_clean(value) != value and not value.startswith("./"):
        errors.invalid(path, value, "must be a clean path without redundant separators")
    return len(errors.messages) == before


# -- users, OCI references ---------------------------------------------------------------------

_USER_NAME_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9_-]*[$]?$")


def check_user_or_group(errors: Errors, path: str, value) -> None:
    """Linux user/group given as a name or a numeric id (empty means root)."""
    value = as_string(errors, path, value)
    if not value:
        return
    if re.fullmatch(r"-?\d+", value):
        ident = int(value)
        if ident < 0 or ident >= 4294967295 or ident == 65535:
            errors.invalid(path, value, "is not a valid user or group ID")
        return
    if len(value) > 32:
        errors.too_long(path, value, 32)
    if not _USER_NAME_RE.match(value):
        errors.invalid(path, value, "is not a valid user name")


_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_OCI_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_OCI_TAG = r"[\w][\w.-]{0,127}"
_OCI_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
OCI_REFERENCE_RE = re.compile(rf"^(?P<name>{_OCI_NAME})(?::{_OCI_TAG})?(?:@{_OCI_DIGEST})?$")


def check_image_reference(ctx: SpecContext, path: str, value, *, template_ok: bool = True) -> None:
    """An OCI image/artifact reference (``registry/repo:tag`` or ``...@sha256:...``)."""
    value = as_string(ctx.errors, path, value, required=True)
    if value is None:
        return
    candidate = value
    if template_ok and ctx.templated(path, value):
        # Substitute a neutral token so the rest of the reference is still checked.
        candidate = _PLACEHOLDER_RE.sub("x", value)
    match = OCI_REFERENCE_RE.match(candidate)
    if not match:
        ctx.errors.invalid(path, value, "must be a valid OCI image reference")
    elif len(match.group("name")) > 255:
        ctx.errors.invalid(path, value, "repository name must not be more than 255 characters")
