"""What every console page shares: rendering inside the admin, keyset pages through the API's
own list machinery, selectors with the API's errors, YAML, bounded counts."""

from __future__ import annotations

import yaml
from django.contrib import admin, messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse

from flightctl.api import paging
from flightctl.api.errors import ApiError
from ui import access

PAGE_SIZE = 50
#: counts shown on pages stop here ("1000+"): an exact count would read every matching row
COUNT_LIMIT = 1000


def render(request, template: str, context: dict, *, title: str, status: int = 200):
    query = request.GET.copy()
    query.pop("continue", None)  # the pager's links keep the selectors, not the position
    context = {**admin.site.each_context(request), "title": title, "query": query.urlencode(),
               "paged": "continue" in request.GET, **context}
    return TemplateResponse(request, template, context, status=status)


def endpoint(request, viewset):
    """The API endpoint of a kind, bound to this user and organization (reads and writes)."""
    return viewset.for_user(request.user, access.org_id(request))


def found(view, name: str):
    """The object ``name`` of the endpoint's kind in this organization, or a 404."""
    obj = view.get_queryset().filter(name=name).first()
    if obj is None:
        raise Http404(f"{view.kind} {name!r} not found")
    return obj


def selected(request, view, queryset, *, fields=None):
    """``queryset`` narrowed by the page's ``labelSelector``/``fieldSelector`` (the API's
    parser); returns ``(queryset, error)``, the error being the API's message."""
    try:
        return view.selected(queryset, request.GET.get("labelSelector", "").strip(),
                             request.GET.get("fieldSelector", "").strip(), fields=fields), None
    except ApiError as exc:
        return queryset.none(), exc.message


def keyset_page(request, view, queryset, *, size: int = PAGE_SIZE):
    """One page of ``queryset`` in the endpoint's list order, from the ``continue`` token of
    the URL; returns ``(rows, next_token, error)``. Costs one query whatever the page."""
    token = request.GET.get("continue")
    if token:
        try:
            queryset = queryset.filter(
                view.keyset_filter(paging.decode_continue(token, len(view.ordering))))
        except ApiError as exc:
            return [], None, exc.message
    order = [f"-{c}" if view.descending else c for c in view.ordering]
    rows = list(queryset.order_by(*order)[: size + 1])
    next_token = None
    if len(rows) > size:
        next_token = paging.encode_continue(view.sort_key(rows[size]), 0)
        rows = rows[:size]
    return rows, next_token, None


def bounded_count(queryset, limit: int = COUNT_LIMIT) -> str:
    """How many rows, read no further than ``limit`` ("1000+")."""
    n = len(queryset.order_by().values_list("pk", flat=True)[: limit + 1])
    return f"{limit}+" if n > limit else str(n)


class _Dumper(yaml.SafeDumper):
    """YAML as people write it: multi-line strings (file contents) as ``|`` blocks."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def to_yaml(value) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False) if value else ""


def done(request, message: str, to: str, *args):
    messages.success(request, message)
    return redirect(to, *args)


def refused(request, exc: ApiError, to: str, *args):
    messages.error(request, exc.message)
    return redirect(to, *args)


def parse_labels(text: str) -> dict:
    """``key=value`` pairs, one per line or comma-separated, as the console's label inputs
    take them; ValueError names the bad entry."""
    labels = {}
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part!r}: expected key=value")
        labels[key.strip()] = value.strip()
    return labels
