"""Field-error primitives shared by every kind's validation.

Flight Control reports validation failures the way Kubernetes does: one line per problem,
``<field path>: <error type>: <value>: <detail>``, all lines joined with newlines into the
``message`` of a 400 ``Status``. Clients (and the reference's own e2e tests) match on these
fragments ("Invalid value", "Required value", "must be unique", ...), so every validator in the
project collects errors through :class:`Errors` instead of formatting strings itself.
"""

from __future__ import annotations

import json
import re

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',"
    "  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


def _quote(value) -> str:
    """Render a rejected value the way Go's %q / k8s field errors do."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class Errors:
    """An ordered collection of field errors for one validation pass.

    Validators append with the helpers below and the caller turns the collection into a 400
    ``Status`` whose message is ``"\\n".join(errors.messages)``.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.messages)

    def __iter__(self):
        return iter(self.messages)

    def extend(self, other: Errors | list[str]) -> None:
        self.messages.extend(other)

    def invalid(self, path: str, value, detail: str) -> None:
        self.messages.append(f"{path}: Invalid value: {_quote(value)}: {detail}")

    def required(self, path: str, detail: str = "") -> None:
        self.messages.append(f"{path}: Required value" + (f": {detail}" if detail else ""))

    def duplicate(self, path: str, value) -> None:
        self.messages.append(f"{path}: Duplicate value: {_quote(value)}")

    def unsupported(self, path: str, value, supported: list[str]) -> None:
        options = ", ".join(_quote(s) for s in supported)
        self.messages.append(
            f"{path}: Unsupported value: {_quote(value)}: supported values: {options}"
        )

    def forbidden(self, path: str, detail: str) -> None:
        self.messages.append(f"{path}: Forbidden: {detail}")

    def too_long(self, path: str, value, max_len: int) -> None:
        self.messages.append(
            f"{path}: Too long: may not be more than {max_len} bytes"
            if not isinstance(value, str)
            else f"{path}: Too long: may not be longer than {max_len}"
        )

    def other(self, path: str, detail: str) -> None:
        self.messages.append(f"{path}: {detail}" if path else detail)

    # -- common checks ----------------------------------------------------------------------

    def dns1123_subdomain(self, path: str, value) -> bool:
        if not isinstance(value, str) or not value:
            self.required(path)
            return False
        ok = True
        if len(value) > DNS1123_SUBDOMAIN_MAX:
            self.invalid(path, value, f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
            ok = False
        if not DNS1123_SUBDOMAIN_RE.match(value):
            self.invalid(path, value, DNS1123_SUBDOMAIN_MSG)
            ok = False
        return ok

    def dns1123_label(self, path: str, value) -> bool:
        if not isinstance(value, str) or not value:
            self.required(path)
            return False
        ok = True
        if len(value) > DNS1123_LABEL_MAX:
            self.invalid(path, value, f"must be no more than {DNS1123_LABEL_MAX} characters")
            ok = False
        if not DNS1123_LABEL_RE.match(value):
            self.invalid(path, value, DNS1123_LABEL_MSG)
            ok = False
        return ok

    def label_key(self, path: str, key) -> bool:
        """Kubernetes qualified name: optional DNS-subdomain prefix, '/', name part <= 63."""
        if not isinstance(key, str) or not key:
            self.invalid(path, key, "name part must be non-empty")
            return False
        prefix, _, name = key.rpartition("/")
        ok = True
        if "/" in key:
            if not prefix:
                self.invalid(path, key, "prefix part must be non-empty")
                ok = False
            elif len(prefix) > DNS1123_SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN_RE.match(prefix):
                self.invalid(path, key, "prefix part " + DNS1123_SUBDOMAIN_MSG)
                ok = False
        if not name:
            self.invalid(path, key, "name part must be non-empty")
            return False
        if len(name) > 63:
            self.invalid(path, key, "name part must be no more than 63 characters")
            ok = False
        if not _QUALIFIED_NAME_RE.match(name):
            self.invalid(path, key, QUALIFIED_NAME_MSG)
            ok = False
        return ok

    def label_value(self, path: str, value) -> bool:
        if not isinstance(value, str):
            self.invalid(path, value, "must be a string")
            return False
        ok = True
        if len(value) > 63:
            self.invalid(path, value, "must be no more than 63 characters")
            ok = False
        if not _LABEL_VALUE_RE.match(value):
            self.invalid(path, value, LABEL_VALUE_MSG)
            ok = False
        return ok

    def labels(self, path: str, labels) -> bool:
        if labels is None:
            return True
        if not isinstance(labels, dict):
            self.invalid(path, labels, "must be a map of string keys to string values")
            return False
        before = len(self.messages)
        for key, value in labels.items():
            self.label_key(path, key)
            self.label_value(f"{path}[{key}]", value)
        return len(self.messages) == before


def is_dns1123_subdomain(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= DNS1123_SUBDOMAIN_MAX and bool(
        DNS1123_SUBDOMAIN_RE.match(value)
    )
