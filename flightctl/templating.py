"""Fleet template placeholders: a safe evaluator for Flight Control's Go ``text/template`` subset.

A fleet's device template may carry placeholders in its string fields, for example
``quay.io/org/os:{{ getOrDefault .metadata.labels "os-tag" "stable" }}``. When a fleet rolls
out, the server renders them once per device against a data model that exposes only the
device's ``.metadata.name`` and ``.metadata.labels``. When a fleet is created or updated, the
template is validated by rendering it against a dummy device.

Upstream uses Go's ``text/template``. We do not embed a general template engine, because its
attribute access and loops would widen what a fleet author can reach. Instead this module
implements exactly the subset Flight Control allows:

* a scanner that splits text from ``{{ ... }}`` actions and applies trim markers and comments,
* a recursive-descent parser that rejects unsupported constructs, unknown functions, wrong
  argument counts and fields outside the data model *before* anything is rendered,
* a tree-walking interpreter that follows Go's rules for truthiness, comparison, printing and
  missing map keys.

Parse once, render many times: ``Template.render`` only walks the tree.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["Template", "TemplateError", "has_placeholders", "parse", "render", "validate"]

MAX_DEPTH = 10  # deepest allowed nesting of if/with blocks, and of parentheses
_SPACE = " \t\r\n"  # Go's isSpace: what trim markers remove and what separates arguments
_UNSUPPORTED = frozenset({"range", "define", "template", "block", "break", "continue", "nil"})
_CONTROL = frozenset({"if", "with", "else", "end"})

# Static "kinds" of values, tracked while parsing so that field access can be checked against
# the data model up front: the root, the metadata object, the labels map, anything else.
_ROOT, _META, _LABELS, _SCALAR = range(4)


class TemplateError(ValueError):
    """A template could not be parsed or rendered; ``str(e)`` is a one-line message for users."""


class _FuncError(Exception):
    """Raised inside a template function; the call site adds the function name and position."""


class _AnyMap(dict):
    """The root and metadata objects: Go's ``map[string]interface {}``.

    Only the labels map is a plain ``dict`` (``map[string]string``). The distinction matters for
    ``getOrDefault`` (which accepts only the labels map) and for a missing key's zero value.
    """


def _where(src: str, pos: int) -> str:
    line, column = src.count("\n", 0, pos) + 1, pos - src.rfind("\n", 0, pos)
    return f"line {line}, column {column}"


# --- values: Go's view of types, printing and quoting --------------------------------------


_GO_TYPES = {str: "string", bool: "bool", int: "int", dict: "map[string]string",
             _AnyMap: "map[string]interface {}", type(None): "<nil>"}
_BASIC = ("string", "bool", "int")  # Go's basic kinds that eq/lt know how to compare


def _go_type(v: Any) -> str:
    return _GO_TYPES.get(type(v)) or type(v).__name__


def _to_text(v: Any) -> str:
    """Print a value the way ``{{ value }}`` does in Go: fmt's %v, but nil is "<no value>"."""
    if type(v) is str:
        return v
    return "<no value>" if v is None else _format_arg("v", v)


_QUOTE_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
                  "\v": r"\v", "\\": "\\\\"}


def _go_quote(s: str, quote: str = '"') -> str:
    """Go's strconv.Quote (or QuoteRune with ``quote="'"``): printable runes kept, rest escaped."""
    out = [quote]
    for ch in s:
        if ch == quote:
            out.append("\\" + quote)
        elif ch in _QUOTE_ESCAPES:
            out.append(_QUOTE_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            out.append(f"\\x{cp:02x}" if cp < 0x80 else f"\\u{cp:04x}" if cp < 0x10000
                       else f"\\U{cp:08x}")
    out.append(quote)
    return "".join(out)


# --- literals ----------------------------------------------------------------------------------

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"'}
_ESCAPE = re.compile(r"\\(?:([abfnrtv\\\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})"
                     r"|U([0-9a-fA-F]{8})|(.))", re.S)


def _unquote(body: str) -> str:
    """Decode the inside of a Go double-quoted string literal (raises ValueError)."""
    if "\\" not in body:
        return body
    # \x and octal escapes denote bytes, as in Go, so decode through a byte buffer.
    buf, pos = bytearray(), 0
    for m in _ESCAPE.finditer(body):
        buf += body[pos:m.start()].encode("utf-8", "surrogatepass")
        pos = m.end()
        simple, hex2, octal, hex4, hex8, bad = m.groups()
        if simple:
            buf += _ESCAPES[simple].encode()
        elif hex2 or octal:
            if int(hex2 or octal, 16 if hex2 else 8) > 255:
                raise ValueError(f"octal escape value > 255: \\{octal}")
            buf.append(int(hex2 or octal, 16 if hex2 else 8))
        elif bad is not None:
            raise ValueError(f"invalid escape sequence \\{bad}")
        else:
            code = int(hex4 or hex8, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise ValueError(f"invalid Unicode code point {m.group()}")
            buf += chr(code).encode()
    buf += body[pos:].encode("utf-8", "surrogatepass")
    return buf.decode("utf-8", "replace")


def _parse_int(text: str) -> int:
    """Parse a Go integer literal: decimal, 0x/0o/0b, legacy leading-zero octal, underscores."""
    body = text[1:] if text[:1] in "+-" else text
    value = None
    if body.isascii():
        if re.fullmatch(r"0(?:_?[0-7])+", body):  # Go still reads "017" as octal
            value = int(body[1:].replace("_", ""), 8)
        else:
            try:
                value = int(body, 0)
            except ValueError:
                pass
    if value is None:
        if any(c in body for c in ".eEpP"):
            raise ValueError(f"unsupported number {text}: only integers are supported")
        raise ValueError(f"bad number syntax: {_go_quote(text)}")
    value = -value if text[0] == "-" else value
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"integer constant {text} overflows int")
    return value


# --- functions ---------------------------------------------------------------------------------


def _want_str(v: Any) -> str:
    if type(v) is not str:
        raise _FuncError(f"wrong type for value; expected string; got {_go_type(v)}")
    return v


def _case(s: Any, convert: Callable[[str], str]) -> str:
    s = _want_str(s)
    if s.isascii():
        return convert(s)
    # Go maps case rune by rune; Python's full case mapping may expand ("ß".upper() == "SS").
    return "".join(c2 if len(c2 := convert(c)) == 1 else c for c in s)


def _get_or_default(m: Any, key: Any, default: Any) -> str:
    if type(m) is not dict:
        raise _FuncError(f"wrong type for value; expected map[string]string; got {_go_type(m)}")
    return m.get(_want_str(key), _want_str(default))


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            if type(key) is not str:
                raise _FuncError(f"value has type {_go_type(key)}; should be string")
            # A missing key yields the element type's zero value; never an error.
            item = item.get(key, None if type(item) is _AnyMap else "")
        elif type(item) is str:
            if type(key) is not int:
                raise _FuncError(f"cannot index string with type {_go_type(key)}")
            data = item.encode()  # Go strings index bytes
            if not 0 <= key < len(data):
                raise _FuncError(f"index out of range: {key}")
            item = data[key]
        elif item is None:
            raise _FuncError("index of untyped nil")
        else:
            raise _FuncError(f"can't index item of type {_go_type(item)}")
    return item


def _len(v: Any) -> int:
    if type(v) is str:
        return len(v.encode())  # Go's len counts bytes
    if isinstance(v, dict):
        return len(v)
    raise _FuncError(f"len of type {_go_type(v)}")


def _eq(a: Any, *others: Any) -> bool:
    ka = _go_type(a)
    for b in others:  # eq a b c means a == b || a == c
        kb = _go_type(b)
        if ka != kb:
            if "<nil>" not in (ka, kb):  # nil compares unequal to anything, without error
                raise _FuncError("incompatible types for comparison")
        elif ka not in _BASIC and ka != "<nil>":
            raise _FuncError(f"non-comparable type {ka}")
        elif a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    ka, kb = _go_type(a), _go_type(b)
    if ka not in _BASIC or kb not in _BASIC:
        raise _FuncError("invalid type for comparison")
    if ka != kb:
        raise _FuncError("incompatible types for comparison")
    if ka == "bool":
        raise _FuncError("invalid type for comparison")
    return a < b  # code-point order equals Go's byte order for UTF-8


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


_VERB = re.compile(r"%(-?)(0?)(\d*)(.?)", re.S)  # flags "-" and "0", width, verb
_MISSING = object()


def _printf(fmt: Any, *args: Any) -> str:
    """Go's fmt.Sprintf for the verbs fleet templates need: %s %d %v %q %t %T and %%."""
    rest = iter(args)

    def directive(m: re.Match[str]) -> str:
        left, zero, width, verb = m.groups()
        if verb == "%":
            return "%"
        if not verb:
            return "%!(NOVERB)"
        if verb not in "sdvqtT":
            raise _FuncError(f"unsupported printf directive {_go_quote(m.group())} "
                             "(supported: %s %d %v %q %t %T %%, with - or 0 and a width)")
        arg = next(rest, _MISSING)
        if arg is _MISSING:
            return f"%!{verb}(MISSING)"
        text, w = _format_arg(verb, arg), int(width or 0)
        if left:
            return text.ljust(w)
        if zero and type(arg) is int and verb in "dv" and text[0] == "-":
            return "-" + text[1:].rjust(w - 1, "0")  # Go puts the zeros after the sign
        return text.rjust(w, "0" if zero and type(arg) is int and verb in "dv" else " ")

    out = _VERB.sub(directive, _want_str(fmt))
    extra = [f"{_go_type(a)}={_to_text(a)}" for a in rest]
    return out + f"%!(EXTRA {', '.join(extra)})" if extra else out


def _format_arg(verb: str, v: Any) -> str:
    t = type(v)
    if verb == "T":
        return _go_type(v)
    if isinstance(v, dict):  # Go sorts the keys and applies the verb to every key and value
        items = (f"{_format_arg(verb, k)}:{_format_arg(verb, v[k])}" for k in sorted(v))
        return "map[" + " ".join(items) + "]"
    if t is str and verb in "svq":
        return _go_quote(v) if verb == "q" else v
    if t is int and verb in "dv":
        return str(v)
    if t is int and verb == "q":  # a quoted character literal
        ok = 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF
        return _go_quote(chr(v), "'") if ok else "'\ufffd'"
    if t is bool and verb in "vt":
        return "true" if v else "false"
    if v is None:
        return "<nil>" if verb == "v" else f"%!{verb}(<nil>)"
    shown = _to_text(v) if t in _GO_TYPES else repr(v)  # (other types are never produced)
    return f"%!{verb}({_go_type(v)}={shown})"  # Go's marker for a verb/type mismatch


# name -> (minimum args, maximum args or None, implementation); and/or are evaluated lazily.
_FUNCS: dict[str, tuple[int, int | None, Callable[..., Any] | None]] = {
    "upper": (1, 1, lambda s: _case(s, str.upper)),
    "lower": (1, 1, lambda s: _case(s, str.lower)),
    "replace": (3, 3, lambda old, new, s: _want_str(s).replace(_want_str(old), _want_str(new))),
    "getOrDefault": (3, 3, _get_or_default),
    "index": (1, None, _index),
    "len": (1, 1, _len),
    "printf": (1, None, _printf),
    "not": (1, 1, lambda v: not v),
    "eq": (2, None, _eq),
    "ne": (2, 2, lambda a, b: not _eq(a, b)),
    "lt": (2, 2, _lt),
    "le": (2, 2, _le),
    "gt": (2, 2, lambda a, b: not _le(a, b)),
    "ge": (2, 2, lambda a, b: not _lt(a, b)),
    "and": (1, None, None),
    "or": (1, None, None),
}


# --- the tree ----------------------------------------------------------------------------------
# The parser compiles the template into closures: an expression is ev(dot, state) -> value and a
# statement is run(dot, state, out), or a plain str for literal text. Rendering calls them with
# no dispatch on node types. Truthiness is Python's bool(), which matches Go for every value the
# data model can produce (empty string, 0, false, empty map, nil are false).


class _State:
    __slots__ = ("root", "missing_ok")

    def __init__(self, root: _AnyMap, missing_ok: bool) -> None:
        self.root, self.missing_ok = root, missing_ok


_Expr = Callable[[Any, _State], Any]
_Node = str | Callable[[Any, _State, list[str]], None]


def _dot(dot: Any, st: _State) -> Any:
    return dot


def _root(dot: Any, st: _State) -> Any:
    return st.root


def _const(value: Any) -> _Expr:
    return lambda dot, st: value


def _field(base: _Expr, names: tuple[str, ...], text: str, where: str) -> _Expr:
    """``.a.b``, ``$.a.b`` or ``(pipeline).a.b``: map lookups, already checked against the model."""
    def ev(dot: Any, st: _State) -> Any:
        v = base(dot, st)
        for name in names:
            if not isinstance(v, dict):  # unreachable after the static check; kept as a guard
                raise TemplateError(f"template error at {where}: <{text}>: can't evaluate "
                                    f"field {name} in type {_go_type(v)}")
            try:
                v = v[name]
            except KeyError:
                if not st.missing_ok:  # Go's missingkey=error, used at rollout
                    raise TemplateError(f"template error at {where}: <{text}>: map has no "
                                        f"entry for key {_go_quote(name)}") from None
                v = ""  # missingkey=zero: the zero value of map[string]string's element
        return v
    return ev


def _call(name: str, fn: Callable[..., Any], args: list[_Expr], piped: bool,
          where: str) -> _Expr:
    def ev(dot: Any, st: _State) -> Any:
        if piped:  # Go evaluates the piped-in value before the command's own arguments
            last = args[-1](dot, st)
            vals = [a(dot, st) for a in args[:-1]]
            vals.append(last)
        else:
            vals = [a(dot, st) for a in args]
        try:
            return fn(*vals)
        except _FuncError as e:
            raise TemplateError(f"template error at {where}: error calling {name}: {e}") from None
    return ev


def _and_or(is_or: bool, args: list[_Expr], piped: bool) -> _Expr:
    """Go's and/or: evaluate left to right, return the first deciding argument or the last."""
    def ev(dot: Any, st: _State) -> Any:
        last = args[-1](dot, st) if piped else None
        for arg in args[:-1]:
            v = arg(dot, st)
            if bool(v) is is_or:
                return v
        return last if piped else args[-1](dot, st)
    return ev


def _run(nodes: tuple[_Node, ...], dot: Any, st: _State, out: list[str]) -> None:
    for node in nodes:
        if type(node) is str:
            out.append(node)
        else:
            node(dot, st, out)  # type: ignore[operator]


def _print(expr: _Expr) -> _Node:
    return lambda dot, st, out: out.append(_to_text(expr(dot, st)))


def _if(branches: tuple[tuple[_Expr, tuple[_Node, ...]], ...], other: tuple[_Node, ...],
        with_: bool) -> _Node:
    """An if (or with) block with its "else if" (or "else with") branches, then the else."""
    def run(dot: Any, st: _State, out: list[str]) -> None:
        for cond, body in branches:
            v = cond(dot, st)
            if v:
                _run(body, v if with_ else dot, st, out)  # inside with, dot is the value
                return
        _run(other, dot, st, out)
    return run


# --- scanner and parser ------------------------------------------------------------------------


class _Tok(NamedTuple):
    kind: str  # space | ( ) str int bool ident field var dot eoa (end of action)
    value: Any
    pos: int
    text: str


class _Operand(NamedTuple):
    expr: _Expr | None  # None for a bare function name; the command turns it into a call
    kind: int
    func: str | None
    pos: int


def _word_end(src: str, j: int) -> int:
    """Index just past the identifier characters (Go: letters, digits, '_') starting at j."""
    while j < len(src) and (src[j] == "_" or src[j].isalpha() or src[j].isdecimal()):
        j += 1
    return j


def _space_at(src: str, i: int) -> bool:
    return i < len(src) and src[i] in _SPACE


class _Parser:
    """Recursive descent over scanned items; ``toks``/``k`` is the action being read."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.items = self._scan()
        self.i = 0
        self.toks: list[_Tok] = []
        self.k = 0

    def error(self, pos: int, msg: str) -> TemplateError:
        return TemplateError(f"template error at {_where(self.src, pos)}: {msg}")

    def peek(self) -> _Tok:
        return self.toks[self.k]

    def take(self) -> _Tok:  # never called on the final "eoa" token
        self.k += 1
        return self.toks[self.k - 1]

    def skip_space(self) -> None:
        if self.toks[self.k].kind == "space":  # the scanner merges runs of spaces
            self.k += 1

    def _scan(self) -> list[str | tuple[int, list[_Tok]]]:
        """Split the source into text and actions, applying trim markers and dropping comments."""
        src, n = self.src, len(self.src)
        items: list[str | tuple[int, list[_Tok]]] = []
        i, trim_next = 0, False
        while True:
            j = src.find("{{", i)
            text = src[i:n if j < 0 else j]
            if trim_next:
                text = text.lstrip(_SPACE)
            # "{{- " trims preceding space; "{{-3" is the number -3, so a space must follow.
            trim_left = j >= 0 and src.startswith("-", j + 2) and _space_at(src, j + 3)
            if trim_left:
                text = text.rstrip(_SPACE)
            if text:
                items.append(text)
            if j < 0:
                return items
            k = j + (4 if trim_left else 2)
            if src.startswith("/*", k):  # a comment must fill the whole action
                end = src.find("*/", k + 2) + 2
                if end < 2:
                    raise self.error(j, "unclosed comment")
                trim_next = _space_at(src, end) and src.startswith("-}}", end + 1)
                if not trim_next and not src.startswith("}}", end):
                    raise self.error(j, "comment ends before closing delimiter")
                i = end + (4 if trim_next else 2)
            else:
                toks, i, trim_next = self._lex_action(k, j)
                items.append((j, toks))

    def _lex_action(self, i: int, start: int) -> tuple[list[_Tok], int, bool]:
        src, n = self.src, len(self.src)
        toks: list[_Tok] = []
        parens = 0
        while True:
            if i >= n:
                raise self.error(start, 'unclosed action (missing "}}")')
            c = src[i]
            trim = c in _SPACE and src.startswith("-}}", i + 1)  # " -}}" trims what follows
            if trim or src.startswith("}}", i):
                if parens:
                    raise self.error(start, "unclosed left paren")
                toks.append(_Tok("eoa", None, i, "}}"))
                return toks, i + (4 if trim else 2), trim
            j, kind, value = i + 1, c, None
            if c in _SPACE:
                while j < n and src[j] in _SPACE and not src.startswith("-}}", j + 1):
                    j += 1
                kind = "space"
            elif c in "|()":
                parens += 1 if c == "(" else -1 if c == ")" else 0
                if parens < 0:
                    raise self.error(i, "unexpected right paren")
            elif c == '"':
                while j < n and src[j] not in '"\n':
                    j += 2 if src[j] == "\\" and src[j + 1:j + 2] not in ("", "\n") else 1
                if j >= n or src[j] != '"':
                    raise self.error(i, "unterminated quoted string")
                j += 1
                try:
                    kind, value = "str", _unquote(src[i + 1:j - 1])
                except ValueError as e:
                    raise self.error(i, f"invalid string literal: {e}") from None
            elif c == "`":
                j = src.find("`", i + 1) + 1
                if not j:
                    raise self.error(i, "unterminated raw quoted string")
                kind, value = "str", src[i + 1:j - 1].replace("\r", "")  # as Go does
            elif c == "$":
                j = _word_end(src, j)
                kind, value = "var", src[i:j]
            elif c in ":=":
                raise self.error(i, "unsupported template construct: variable declaration")
            elif c == "." and not src[j:j + 1].isdigit():
                j = _word_end(src, j)
                kind, value = ("field", src[i + 1:j]) if j > i + 1 else ("dot", None)
            elif c in "+-." or "0" <= c <= "9":  # scan generously; _parse_int judges it
                while j < n and (src[j].isalnum() or src[j] in "_."
                                 or (src[j] in "+-" and src[j - 1] in "eEpP")):
                    j += 1
                try:
                    kind, value = "int", _parse_int(src[i:j])
                except ValueError as e:
                    raise self.error(i, str(e)) from None
            elif c == "_" or c.isalpha():
                j = _word_end(src, j)
                kind, value = "ident", src[i:j]
                if value in ("true", "false"):
                    kind, value = "bool", value == "true"
            elif c == "'":
                raise self.error(i, "unsupported template construct: character constant")
            else:
                raise self.error(i, f"unrecognized character in action: {_go_quote(c)}")
            toks.append(_Tok(kind, value, i, src[i:j]))
            i = j

    # Statements -----------------------------------------------------------------------------

    def parse(self) -> tuple[_Node, ...]:
        nodes, term, pos = self._parse_list(_ROOT, 0)
        if term:
            raise self.error(pos, f"unexpected {{{{{term}}}}}")
        return nodes

    def _parse_list(self, dot: int, depth: int) -> tuple[tuple[_Node, ...], str, int]:
        """Parse statements up to an {{else}} or {{end}} (left as the current action) or EOF."""
        nodes: list[_Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if isinstance(item, str):
                nodes.append(item)
                continue
            pos, self.toks, self.k = item[0], item[1], 0
            self.skip_space()
            word = self.peek().value if self.peek().kind == "ident" else None
            if word in ("else", "end"):
                self.k += 1
                return tuple(nodes), word, pos
            if word in ("if", "with"):
                self.k += 1
                nodes.append(self._parse_control(word, pos, dot, depth))
            else:
                expr, _ = self._pipeline(dot, 0, "command")
                self._expect_end("command")
                nodes.append(_print(expr))
        return tuple(nodes), "", len(self.src)

    def _parse_control(self, word: str, pos: int, dot: int, depth: int) -> _Node:
        if depth >= MAX_DEPTH:
            raise self.error(pos, f"template nesting depth exceeds the maximum of {MAX_DEPTH}")
        branches: list[tuple[_Expr, tuple[_Node, ...]]] = []
        other: tuple[_Node, ...] = ()
        while True:
            cond, kind = self._pipeline(dot, 0, word)
            self._expect_end(word)
            body, term, tpos = self._parse_list(kind if word == "with" else dot, depth + 1)
            branches.append((cond, body))
            if term != "else":
                break
            self.skip_space()
            if self.peek().kind == "ident" and self.peek().value == word:
                # "else if"/"else with" adds a branch to the same block: a long chain is
                # not nesting, and is parsed and run without recursion.
                self.k += 1
                continue
            self._expect_end("{{else}}")
            other, term, tpos = self._parse_list(dot, depth + 1)
            if term == "else":
                raise self.error(tpos, "expected {{end}}; found {{else}}")
            break
        if not term:
            raise self.error(pos, f"unclosed {{{{{word}}}}}: missing {{{{end}}}}")
        self._expect_end("{{end}}")
        return _if(tuple(branches), other, word == "with")

    def _expect_end(self, context: str) -> None:
        self.skip_space()
        tok = self.peek()
        if tok.kind != "eoa":
            raise self.error(tok.pos, f"unexpected {_go_quote(tok.text)} in {context}")

    # Expressions ----------------------------------------------------------------------------

    def _pipeline(self, dot: int, parens: int, context: str) -> tuple[_Expr, int]:
        """command ('|' command)*; each command's value is passed as the next one's last arg."""
        piped = self._command(dot, parens, None, context)
        while self.peek().kind == "|":
            self.k += 1
            piped = self._command(dot, parens, piped, context)
        return piped

    def _command(self, dot: int, parens: int, piped: tuple[_Expr, int] | None,
                 context: str) -> tuple[_Expr, int]:
        self.skip_space()
        start = self.peek().pos
        ops: list[_Operand] = []
        while self.peek().kind not in ("|", ")", "eoa"):
            ops.append(self._operand(dot, parens))
            tok = self.peek()
            if tok.kind == "space":
                self.k += 1
            elif tok.kind not in ("|", ")", "eoa"):
                raise self.error(tok.pos, f"unexpected {_go_quote(tok.text)} in operand")
        if not ops:
            raise self.error(start, "missing command" if piped else f"missing value for {context}")
        head = ops[0]
        if head.expr is not None:
            if len(ops) > 1 or piped:
                text = self.src[start:ops[1].pos if len(ops) > 1 else self.peek().pos].strip()
                raise self.error(start, f"can't give argument to non-function {text}")
            return head.expr, head.kind
        # A function name used as an argument is a call without arguments, as in Go.
        args = [self._make_call(o.func, [], False, o.pos) if o.func else (o.expr, o.kind)
                for o in ops[1:]]
        if piped:
            args.append(piped)
        return self._make_call(head.func or "", args, piped is not None, start)

    def _make_call(self, name: str, args: list[tuple[_Expr, int]], piped: bool,
                   pos: int) -> tuple[_Expr, int]:
        lo, hi, fn = _FUNCS[name]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"at least {lo}" if hi is None else str(lo)
            raise self.error(pos, f"wrong number of args for {name}: want {want} got {len(args)}")
        exprs = [a[0] for a in args]
        if fn is None:
            # and/or return one of their arguments, so the result has their kind only when
            # all agree; otherwise field access on it is rejected.
            kinds = {a[1] for a in args}
            return _and_or(name == "or", exprs, piped), kinds.pop() if len(kinds) == 1 else _SCALAR
        return _call(name, fn, exprs, piped, _where(self.src, pos)), _SCALAR

    def _operand(self, dot: int, parens: int) -> _Operand:
        tok = self.peek()
        if tok.kind == "field":  # left unread: it is the first name of the chain
            return self._fields(_dot, dot, tok.pos)
        self.k += 1
        if tok.kind in ("str", "int", "bool"):
            return _Operand(_const(tok.value), _SCALAR, None, tok.pos)
        if tok.kind == "dot":
            return _Operand(_dot, dot, None, tok.pos)
        if tok.kind == "var":
            if tok.value != "$":
                raise self.error(tok.pos, f"unsupported template construct: variable "
                                          f"{tok.value} (only $ is available)")
            return self._fields(_root, _ROOT, tok.pos)
        if tok.kind == "ident":
            if tok.value in _UNSUPPORTED:
                raise self.error(tok.pos, f"unsupported template construct {_go_quote(tok.text)}")
            if tok.value in _CONTROL:
                raise self.error(tok.pos, f"unexpected {_go_quote(tok.text)} in operand")
            if tok.value not in _FUNCS:
                raise self.error(tok.pos, f"function {_go_quote(tok.text)} not defined")
            return _Operand(None, _SCALAR, tok.value, tok.pos)
        if tok.kind == "(":
            if parens >= MAX_DEPTH:
                raise self.error(tok.pos, f"parenthesis nesting depth exceeds the maximum of "
                                          f"{MAX_DEPTH}")
            expr, kind = self._pipeline(dot, parens + 1, "command")
            self.k += 1  # the ")": the scanner guarantees parentheses balance
            return self._fields(expr, kind, tok.pos)
        raise self.error(tok.pos, f"unexpected {_go_quote(tok.text)} in operand")

    def _fields(self, base: _Expr, kind: int, pos: int) -> _Operand:
        """Read a run of ``.name`` tokens after ``base`` and check it against the data model."""
        names: list[str] = []
        while self.peek().kind == "field":
            names.append(self.take().value)
        if not names:
            return _Operand(base, kind, None, pos)
        text = self.src[pos:self.peek().pos]
        for name in names:
            if kind == _ROOT and name == "metadata":
                kind = _META
            elif kind == _META and name in ("name", "labels"):
                kind = _LABELS if name == "labels" else _SCALAR
            elif kind == _LABELS:
                kind = _SCALAR  # a label lookup
            else:
                raise self.error(pos, f"template references unsupported field {_go_quote(text)}"
                                      " (only .metadata.name and .metadata.labels exist)")
        return _Operand(_field(base, tuple(names), text, _where(self.src, pos)), kind, None, pos)


# --- public interface --------------------------------------------------------------------------


class Template:
    """A parsed template; render it once per device."""

    __slots__ = ("source", "_nodes", "_static")

    def __init__(self, source: str, nodes: tuple[_Node, ...]) -> None:
        self.source = source
        self._nodes = nodes
        # Text with only comments or trim markers still renders the same for every device.
        self._static = "".join(nodes) if all(type(n) is str for n in nodes) else None

    def render(self, name: str, labels: dict[str, str], *, missing_ok: bool = False) -> str:
        """Render for one device; ``missing_ok`` chooses Go's missingkey=zero over =error."""
        if self._static is not None:
            return self._static
        if type(labels) is not dict:
            labels = dict(labels or {})
        root = _AnyMap(metadata=_AnyMap(name=name, labels=labels))
        out: list[str] = []
        try:
            _run(self._nodes, root, _State(root, missing_ok), out)
        except RecursionError:  # a pipeline evaluates recursively, one frame per command
            raise TemplateError("template is too complex to render") from None
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def has_placeholders(text: str) -> bool:
    """True when the string contains an action and so needs rendering per device."""
    return "{{" in text


def parse(text: str) -> Template:
    """Parse a template, rejecting bad syntax, unsupported constructs/fields and deep nesting."""
    try:
        return Template(text, _Parser(text).parse())
    except RecursionError:  # e.g. a pipeline of thousands of commands
        raise TemplateError("template is too complex to parse") from None


# Templates are immutable, so one parsed copy can serve every device of a rollout.
_parse_cached = functools.lru_cache(maxsize=256)(parse)


def render(text: str, name: str, labels: dict[str, str], *, missing_ok: bool = False) -> str:
    """Parse (cached) and render ``text`` for one device."""
    if "{{" not in text:
        return text
    return _parse_cached(text).render(name, labels, missing_ok=missing_ok)


def validate(text: str) -> None:
    """Check a fleet template string the way fleet validation does: parse, then render it for
    a dummy device with missing labels treated as empty. Raises TemplateError."""
    if "{{" in text:
        _parse_cached(text).render("dummy", {}, missing_ok=True)
