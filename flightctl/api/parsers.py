"""Request body parsers beyond DRF's JSON: RFC 6902 JSON Patch documents."""

from rest_framework.parsers import JSONParser


class JSONPatchParser(JSONParser):
    """``application/json-patch+json``: a JSON array of patch operations."""

    media_type = "application/json-patch+json"
