"""URL patterns of a resource kind, spelled the reference's way (no trailing slashes)."""

from __future__ import annotations

from django.urls import path

COLLECTION = {"get": "list", "post": "create"}
ITEM = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
STATUS = {"get": "status_retrieve", "put": "status_update", "patch": "status_patch"}


def resource_urls(plural: str, viewset, *, item=ITEM, status: bool = True, extra=()) -> list:
    """``/api/v1/<plural>``, ``/<plural>/<name>``, ``/<plural>/<name>/status`` and extras.

    ``extra`` is a sequence of ``(suffix, {method: action})`` for subresources such as
    ``lastseen`` or ``approval``.
    """
    base = f"api/v1/{plural}"
    patterns = [
        path(base, viewset.as_view(COLLECTION), name=f"{plural}-list"),
        path(f"{base}/<str:name>", viewset.as_view(item), name=f"{plural}-detail"),
    ]
    if status:
        patterns.append(
            path(f"{base}/<str:name>/status", viewset.as_view(STATUS), name=f"{plural}-status")
        )
    for suffix, actions in extra:
        patterns.append(
            path(f"{base}/<str:name>/{suffix}", viewset.as_view(actions),
                 name=f"{plural}-{suffix.replace('/', '-')}")
        )
    return patterns
