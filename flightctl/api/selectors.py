"""Label and field selectors: the filter language of every list endpoint.

A selector is a comma-separated conjunction of *requirements* in Kubernetes selector grammar,
``key=value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key`` (exists) and
``!key`` (does not exist), which Flight Control extends for field selectors with
``contains``/``notcontains`` and the ordering operators ``<``, ``<=``, ``>``, ``>=``.

* ``labelSelector`` filters on ``metadata.labels``. Labels live in a JSONB column with a GIN
  index, so every requirement becomes a containment (``@>``) or key-existence (``?``) test
  that PostgreSQL answers from that index.
* ``fieldSelector`` filters on a per-kind whitelist of selectable names (``metadata.name``,
  ``status.summary.status``, ...). Each name maps to a :class:`Field`: an ORM lookup path (or a
  callable for composite fields) plus a type that decides which operators are allowed and
  how values are parsed.

Both are translated into Django ``Q`` objects; nothing is ever filtered in Python, except
:func:`match_labels`, which evaluates a label selector against one label map (tests). A
``LabelSelector`` object (a fleet's ``matchLabels``/``matchExpressions``) is translated through
the same requirements (:func:`label_selector_object_q`).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q

from flightctl.api.validation import Errors

__all__ = [
    "Field",
    "Requirement",
    "SelectorError",
    "any_of",
    "field_selector_q",
    "label_selector_object_q",
    "label_selector_q",
    "match_labels",
    "parse_selector",
    "selector_requirements",
]


class SelectorError(ValueError):
    """A selector that cannot be parsed or applied; ``str(e)`` is the 400 ``Status`` message."""


OPERATORS = frozenset(
    {"exists", "!", "=", "!=", "in", "notin", "contains", "notcontains", "<", "<=", ">", ">="}
)
_WORD_OPERATORS = frozenset({"in", "notin", "contains", "notcontains"})
_SET_OPERATORS = frozenset({"in", "notin"})
_LABEL_OPERATORS = frozenset({"exists", "!", "=", "!=", "in", "notin"})

# Which operators each field type accepts (api.md §5.2). Ordering only makes sense for
# timestamps and numbers; substring/element tests only for strings and arrays.
_COMMON = frozenset({"exists", "!"})
_ORDERED = frozenset({"=", "!=", "<", "<=", ">", ">=", "in", "notin"})
TYPE_OPERATORS: dict[str, frozenset[str]] = {
    "string": _COMMON | {"=", "!=", "in", "notin", "contains", "notcontains"},
    "timestamp": _COMMON | _ORDERED,
    "number": _COMMON | _ORDERED,
    "bool": _COMMON | {"=", "!=", "in", "notin"},
    "array": _COMMON | {"in", "notin", "contains", "notcontains"},
}

_RANGE_LOOKUPS = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}


@dataclass(frozen=True)
class Requirement:
    """One parsed requirement: ``key``, a normalised ``operator`` and its ``values``.

    ``exists`` and ``!`` carry no values, ``in``/``notin`` one or more, everything else one.
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Field:
    """How one selectable field name maps onto the database.

    ``lookup`` is an ORM lookup path (``"name"``, ``"created_at"``, ``"summary_status"``,
    ``"status__summary__status"``) or, for composite fields such as ``metadata.nameOrAlias``,
    a callable ``(operator, raw_values) -> Q``.

    Caveats of plain lookup paths that point *into* a JSONField: Django turns ``__contains``
    on a JSON key into JSONB containment (an exact match for strings) and cannot compare a
    JSON value with a ``datetime``. String fields that need substring ``contains`` and
    timestamp fields should therefore point at a real column or a text annotation
    (``KT("status__summary__status")``), or use a callable.
    """

    lookup: str | Callable[[str, list[str]], Q]
    type: str = "string"

    def __post_init__(self) -> None:
        if self.type not in TYPE_OPERATORS:
            # A programming error in a whitelist, not a client error: fail loudly at import.
            raise ValueError(f"unknown selector field type {self.type!r}")


# -- parsing ---------------------------------------------------------------------------------


class _Parser:
    """A hand-written scanner: the grammar is tiny, and per-position errors stay precise."""

    # Characters that end a key (or an operator word) unless backslash-escaped.
    _KEY_STOP = frozenset(",()=!<>")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, detail: str) -> SelectorError:
        return SelectorError(f"invalid selector {_go_quote(self.text)}: {detail}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def read(self, stop: frozenset[str]) -> str:
        """Read up to an unescaped whitespace or ``stop`` character; ``\\x`` means literal x."""
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\":
                if self.pos + 1 == len(self.text):
                    raise self.error("trailing '\\' escapes nothing")
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char.isspace() or char in stop:
                break
            out.append(char)
            self.pos += 1
        return "".join(out)

    def parse(self) -> list[Requirement]:
        if not self.text.strip():
            return []
        requirements = [self.requirement()]
        while self.peek() == ",":
            self.pos += 1
            requirements.append(self.requirement())
        return requirements

    def requirement(self) -> Requirement:
        self.skip_space()
        if self.peek() == "!":
            self.pos += 1
            self.skip_space()
            key = self.key()
            self.end_of_requirement(f"after '!{key}'")
            return Requirement(key, "!")

        key = self.key()
        self.skip_space()
        if self.peek() in ("", ","):
            return Requirement(key, "exists")

        op = self.operator(key)
        if op in _SET_OPERATORS:
            values = self.value_list(op)
        else:
            self.skip_space()
            # Outside parentheses a value runs to the next unescaped comma or whitespace;
            # '=' and friends are ordinary characters there ("metadata.owner=Fleet/a=b").
            values = (self.read(frozenset(",")),)
        self.end_of_requirement(f"after the value of {_go_quote(key)}")
        return Requirement(key, op, values)

    def key(self) -> str:
        key = self.read(self._KEY_STOP)
        if not key:
            found = self.peek()
            where = f"found {found!r}" if found else "found end of selector"
            raise self.error(f"expected a key, {where}")
        return key

    def operator(self, key: str) -> str:
        for symbol in ("==", "!=", "<=", ">=", "=", "<", ">"):
            if self.text.startswith(symbol, self.pos):
                self.pos += len(symbol)
                return "=" if symbol == "==" else symbol
        start = self.pos
        word = self.read(self._KEY_STOP)
        if word not in _WORD_OPERATORS:
            found = word or self.text[start : start + 1]
            raise self.error(f"expected an operator after {_go_quote(key)}, found {found!r}")
        return word

    def value_list(self, op: str) -> tuple[str, ...]:
        self.skip_space()
        if self.peek() != "(":
            raise self.error(f"expected '(' after '{op}'")
        self.pos += 1
        values: list[str] = []
        while True:
            self.skip_space()
            # Inside parentheses only ',' and ')' delimit, so values may contain '=' etc.
            values.append(self.read(frozenset(",)")))
            self.skip_space()
            char = self.peek()
            if char == ")":
                self.pos += 1
                break
            if char != ",":
                if not char:
                    raise self.error("expected ')'")
                raise self.error(f"expected ',' or ')', found {char!r}")
            self.pos += 1
        # Like Kubernetes, "in ()" is the set holding the empty string; duplicates collapse.
        return tuple(dict.fromkeys(values))

    def end_of_requirement(self, where: str) -> None:
        self.skip_space()
        char = self.peek()
        if char == ",":
            rest = self.text[self.pos + 1 :]
            if not rest.strip():
                raise self.error("expected a requirement after ','")
        elif char:
            raise self.error(f"expected ',' or end of selector {where}, found {char!r}")


def _go_quote(text: str) -> str:
    """Quote like Go's %q does for ordinary text, as the reference's messages do."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_selector(text: str) -> list[Requirement]:
    """Parse a selector into requirements (grammar only: no label or field validation)."""
    return _Parser(text or "").parse()


# -- label selectors -------------------------------------------------------------------------


def _label_requirements(text_or_requirements: str | Iterable[Requirement]) -> list[Requirement]:
    """Parse (if needed) and validate requirements as Kubernetes label requirements."""
    if isinstance(text_or_requirements, str):
        text = text_or_requirements
        requirements = parse_selector(text)
    else:
        requirements = list(text_or_requirements)
        text = ",".join(_render(r) for r in requirements)
    for req in requirements:
        if req.operator not in _LABEL_OPERATORS:
            raise SelectorError(
                f"invalid selector {_go_quote(text)}: operator {_go_quote(req.operator)} "
                f"is not supported in label selectors"
            )
        errors = Errors()
        errors.label_key("key", req.key)
        for index, value in enumerate(req.values):
            errors.label_value(f"values[{index}]", value)
        if errors:
            raise SelectorError(f"invalid selector {_go_quote(text)}: {'; '.join(errors)}")
    return requirements


def _render(req: Requirement) -> str:
    """Human-readable form of a requirement, only for error messages."""
    if req.operator == "exists":
        return req.key
    if req.operator == "!":
        return "!" + req.key
    if req.operator in _SET_OPERATORS:
        return f"{req.key} {req.operator} ({','.join(req.values)})"
    if req.operator in _WORD_OPERATORS:
        return f"{req.key} {req.operator} {''.join(req.values)}"
    return f"{req.key}{req.operator}{''.join(req.values)}"


def _and(parts: Iterable[Q]) -> Q:
    return functools.reduce(operator.and_, parts, Q())


def label_selector_q(text: str, column: str = "labels") -> Q:
    """Translate a label selector into a ``Q`` on the JSONB ``column``; blank text → ``Q()``."""
    return _and(_requirement_q(req, column) for req in _label_requirements(text or ""))


#: ``matchExpressions`` operators of a ``LabelSelector`` object, in the selector grammar
_EXPRESSION_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selector_requirements(selector: Mapping | None) -> list[Requirement]:
    """A ``LabelSelector`` object (``matchLabels`` and ``matchExpressions``, as in a fleet's
    spec, validated when it was written) as the requirements of the selector grammar."""
    selector = selector or {}
    requirements = [Requirement(key, "=", (value,))
                    for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        op = _EXPRESSION_OPERATORS.get(expression.get("operator"))
        if op is not None:
            requirements.append(Requirement(expression.get("key"), op,
                                            tuple(expression.get("values") or ())))
    return requirements


def label_selector_object_q(selector: Mapping | None, column: str = "labels") -> Q | None:
    """A ``LabelSelector`` object as a ``Q`` on ``column``; None when it selects nothing (an
    empty or absent selector: a fleet without one has no members)."""
    requirements = selector_requirements(selector)
    if not requirements:
        return None
    return _and(_requirement_q(req, column) for req in requirements)


def _requirement_q(req: Requirement, column: str) -> Q:
    """Every positive test is ``@>`` (containment) or ``?`` (has key), the two operators the
    default ``jsonb_ops`` GIN index serves. Negations are ``NOT`` of the same tests, which is
    what gives ``!=``/``notin`` the Kubernetes meaning of also matching objects without the key.
    """
    contains = f"{column}__contains"
    has_key = f"{column}__has_key"
    op, key = req.operator, req.key
    if op == "exists":
        return Q(**{has_key: key})
    if op == "!":
        return ~Q(**{has_key: key})
    if op == "=":
        return Q(**{contains: {key: req.values[0]}})
    if op == "!=":
        return ~Q(**{contains: {key: req.values[0]}})
    if not req.values:  # only a LabelSelector object can say "in ()": nothing is in it
        return Q(pk__in=[]) if op == "in" else Q()
    # An OR of containments keeps each branch indexable (a BitmapOr in the plan), unlike
    # "labels->>key IN (...)".
    any_of = functools.reduce(operator.or_, (Q(**{contains: {key: value}})
                                             for value in req.values))
    return any_of if op == "in" else ~any_of


def match_labels(
    text_or_requirements: str | Iterable[Requirement], labels: Mapping[str, str] | None
) -> bool:
    """Evaluate a label selector against one label map, with the same semantics as the SQL.

    An empty selector matches everything (Kubernetes ``Everything()``); callers for which an
    empty selector means "nothing" (fleet selectors) must check that themselves.
    """
    labels = labels or {}
    for req in _label_requirements(text_or_requirements or ""):
        present = req.key in labels
        value = labels.get(req.key)
        if req.operator == "exists":
            ok = present
        elif req.operator == "!":
            ok = not present
        elif req.operator == "=":
            ok = present and value == req.values[0]
        elif req.operator == "!=":
            ok = not present or value != req.values[0]
        elif req.operator == "in":
            ok = present and value in req.values
        else:  # notin
            ok = not present or value not in req.values
        if not ok:
            return False
    return True


# -- field selectors -------------------------------------------------------------------------

# RFC 3339 as Go's time.RFC3339 parses it: 'T' and 'Z' upper case, optional fraction.
_RFC3339_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
# Decimal numbers only: Python's int()/float() would also take "1_000", "nan" and "inf".
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER_RE = re.compile(r"[+-]?\d+", re.ASCII)
# The spellings Go's strconv.ParseBool accepts.
_BOOLS = {
    **dict.fromkeys(("true", "True", "TRUE", "t", "T", "1"), True),
    **dict.fromkeys(("false", "False", "FALSE", "f", "F", "0"), False),
}


def _parse_timestamp(value: str) -> datetime:
    match = _RFC3339_RE.fullmatch(value)
    if not match:
        raise ValueError("an RFC3339 timestamp (e.g. 2024-01-02T03:04:05Z)")
    base, fraction, zone = match.groups()
    # Go emits nanoseconds; Python keeps microseconds, so drop the extra digits.
    text = base + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    text += "+00:00" if zone == "Z" else zone
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("an RFC3339 timestamp (e.g. 2024-01-02T03:04:05Z)") from None


def _parse_number(value: str) -> int | float:
    if not _NUMBER_RE.fullmatch(value):
        raise ValueError("a number")
    return int(value) if _INTEGER_RE.fullmatch(value) else float(value)


def _parse_bool(value: str) -> bool:
    try:
        return _BOOLS[value]
    except KeyError:
        raise ValueError("a boolean (true or false)") from None


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "array": str,  # values are array elements, and the arrays hold strings
    "timestamp": _parse_timestamp,
    "number": _parse_number,
    "bool": _parse_bool,
}


def _field_q(lookup: str, field_type: str, op: str, values: list[Any]) -> Q:
    """The ``Q`` for one requirement on a plain lookup path, ``values`` already typed."""

    def q(suffix: str, value: Any) -> Q:
        return Q(**{f"{lookup}__{suffix}" if suffix else lookup: value})

    # Negations OR in "IS NULL": SQL NOT(x = v) is NULL, i.e. false, when x is NULL or a JSON
    # key is missing, yet a field that is absent certainly differs from v.
    def negated(positive: Q) -> Q:
        return ~positive | q("isnull", True)

    if op == "exists":
        return q("isnull", False)
    if op == "!":
        return q("isnull", True)
    if op in _RANGE_LOOKUPS:
        return q(_RANGE_LOOKUPS[op], values[0])
    if field_type == "array":
        # in/notin test for a common element (&&), contains/notcontains for one element (@>).
        if op in _SET_OPERATORS:
            positive = q("overlap", values)
        else:
            positive = q("contains", [values[0]])
        return positive if op in ("in", "contains") else negated(positive)
    # String, timestamp, number and bool: "=" is exact, "contains" is LIKE '%v%' (case-sensitive).
    suffix = {"=": "", "!=": "", "in": "in", "notin": "in"}.get(op, "contains")
    positive = q(suffix, values if op in _SET_OPERATORS else values[0])
    return positive if op in ("=", "in", "contains") else negated(positive)


def any_of(*lookups: str) -> Callable[[str, list[str]], Q]:
    """A string field that matches when any of several columns does (``metadata.nameOrAlias``,
    a label's ``keyOrValue``): positive operators OR the columns, negated ones AND them."""

    def q(op: str, values: list[str]) -> Q:
        parts = [_field_q(lookup, "string", op, values) for lookup in lookups]
        combine = operator.or_ if op in ("exists", "=", "in", "contains") else operator.and_
        return functools.reduce(combine, parts)

    return q


def field_selector_q(text: str, fields: Mapping[str, Field]) -> Q:
    """Translate a field selector into a ``Q`` using the caller's whitelist of ``fields``."""
    parts: list[Q] = []
    for req in parse_selector(text or ""):
        field = fields.get(req.key)
        if field is None:
            supported = " ".join(sorted(fields))
            raise SelectorError(
                "unknown or unsupported selector: unable to resolve selector name "
                f"{_go_quote(req.key)}. Supported selectors are: [{supported}]"
            )
        if req.operator not in TYPE_OPERATORS[field.type]:
            raise SelectorError(
                f"invalid selector {_go_quote(text)}: operator {_go_quote(req.operator)} is "
                f"not supported for field {_go_quote(req.key)} of type {field.type}"
            )
        parse = _PARSERS[field.type]
        typed: list[Any] = []
        for value in req.values:
            try:
                typed.append(parse(value))
            except ValueError as exc:
                raise SelectorError(
                    f"invalid selector {_go_quote(text)}: value {_go_quote(value)} of field "
                    f"{_go_quote(req.key)} is not {exc}"
                ) from None
        if callable(field.lookup):
            # Composite fields get the raw strings: only they know how to combine columns.
            parts.append(field.lookup(req.operator, list(req.values)))
        else:
            parts.append(_field_q(field.lookup, field.type, req.operator, typed))
    return _and(parts)
