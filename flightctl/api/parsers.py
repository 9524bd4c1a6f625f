"""Reading what a client sends, once for both APIs: JSON bodies (and RFC 6902 JSON Patch
documents), the request path and the query string.

Input no resource could ever hold is refused here, before any view, with a 400 (or 413)
``Status`` instead of failing deep inside as a 500:

* a NUL character anywhere — in a JSON string or key, the path or a query parameter:
  PostgreSQL cannot store one in text or JSONB, and no name, selector or file path has one;
* JSON nested deeper than :data:`MAX_DEPTH` (Python's parser and every recursive walk of a
  document would hit the recursion limit);
* a body larger than Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB, as the agent API).
"""

from __future__ import annotations

import json
from urllib.parse import unquote_to_bytes

from django.conf import settings
from rest_framework import parsers

from flightctl.api.errors import ApiError, bad_request

#: Deepest JSON accepted. The deepest resource (a device spec with application volumes) is
#: about a dozen levels; Kubernetes-style documents stay far below this.
MAX_DEPTH = 64
MSG_NUL = "must not contain NUL (\\u0000) characters"


def body_limit() -> int | None:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def too_large() -> ApiError:
    return ApiError(413, f"request body too large: at most {body_limit()} bytes are accepted")


def _plainly_acceptable(text: bytes | str) -> bool:
    """A sufficient condition for :func:`document_problem` to find nothing, checked on a
    document's JSON text by C string searches: no NUL (escaped or raw: UTF-16/32 text has raw
    ones, and falls through) and fewer brackets than :data:`MAX_DEPTH`, so no container can be
    nested deeper. The walk below was a tenth of a status report's CPU in the agent API."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return (b"\x00" not in text and b"\\u0000" not in text
            and text.count(b"{") + text.count(b"[") < MAX_DEPTH)


def document_problem(document) -> str | None:
    """Why a parsed JSON document is refused (NUL, nesting), or None. Iterative: the
    document may be too deep for recursion."""
    try:
        if _plainly_acceptable(json.dumps(document)):
            return None
    except (TypeError, ValueError, RecursionError):  # not plain JSON data: walk it
        pass
    stack = [(document, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return f"{where or 'request body'}: Invalid value: {MSG_NUL}"
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            return f"request body: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    return f"{where or 'request body'}: Invalid key: {MSG_NUL}"
                stack.append((item, depth + 1, f"{where}.{key}" if where else key))
        else:
            stack.extend((item, depth + 1, f"{where}[{index}]")
                         for index, item in enumerate(value))
    return None


def load_json(raw: bytes | str):
    """The JSON document in ``raw``; ApiError 400 for anything :func:`document_problem`
    refuses or that is not JSON at all (an empty body is ``null``)."""
    try:
        document = json.loads(raw or b"null")
    except RecursionError:
        raise bad_request(f"API Error: request body is nested deeper than {MAX_DEPTH} levels")
    except ValueError:  # also UnicodeDecodeError
        raise bad_request("API Error: request body is not valid JSON")
    problem = None if _plainly_acceptable(raw or b"") else document_problem(document)
    if problem:
        raise bad_request(f"API Error: {problem}")
    return document


def request_refusal(path: str, query_string: str, content_length) -> ApiError | None:
    """What to answer a request before any view runs, or None: a NUL in its path or query,
    or a declared body over the limit."""
    if "\x00" in path:
        return bad_request(f"the request path {MSG_NUL}")
    if b"\x00" in unquote_to_bytes(query_string or ""):
        return bad_request(f"query parameters {MSG_NUL}")
    limit = body_limit()
    try:
        declared = int(content_length or 0)
    except ValueError:
        return bad_request("invalid Content-Length")
    if limit is not None and declared > limit:
        return too_large()
    return None


def _read_limited(stream) -> bytes:
    limit = body_limit()
    if stream is None:
        return b""
    if limit is None:
        return stream.read()
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise too_large()
    return raw


class JSONParser(parsers.JSONParser):
    """``application/json`` through :func:`load_json`, reading at most the body limit (a
    chunked body declares no length the middleware could refuse it by)."""

    def parse(self, stream, media_type=None, parser_context=None):
        return load_json(_read_limited(stream))


class JSONPatchParser(JSONParser):
    """``application/json-patch+json``: a JSON array of patch operations."""

    media_type = "application/json-patch+json"
