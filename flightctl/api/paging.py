"""``limit`` / ``continue`` keyset paging in the reference's token format.

A token is standard base64 of ``{"Version":1,"Names":[<sort key of the next page's first
item>],"Count":<items remaining>}``. The CLI passes it back opaquely with the same selectors.
Paging is keyset (``WHERE key >= token``), so page N costs the same as page 1.
"""

from __future__ import annotations

import base64
import binascii
import json

from flightctl.api.errors import bad_request

MAX_LIMIT = 1000


def parse_limit(raw: str | None) -> int:
    if raw in (None, ""):
        return MAX_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"API Error: invalid limit {raw!r}: must be an integer")
    if limit < 0:
        raise bad_request("limit cannot be negative")
    if limit > MAX_LIMIT:
        raise bad_request(f"limit cannot exceed {MAX_LIMIT}")
    return limit or MAX_LIMIT


def encode_continue(names: list[str], remaining: int) -> str:
    payload = json.dumps({"Version": 1, "Names": names, "Count": remaining}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def decode_continue(token: str, key_count: int) -> list[str]:
    try:
        payload = json.loads(base64.b64decode(token.encode(), validate=True))
        names = payload["Names"]
        if payload.get("Version") != 1 or not isinstance(names, list) or len(names) != key_count:
            raise ValueError("incompatible token")
        if not all(isinstance(name, str) for name in names):
            raise ValueError("incompatible token")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise bad_request(f"failed to parse continue parameter: {exc}")
    return names
