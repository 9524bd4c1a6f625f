"""Events: the organization's audit trail, newest first, with the API's field selectors."""

from __future__ import annotations

from flightctl.api.views import EventViewSet
from ui import access
from ui.views.common import endpoint, keyset_page, render, selected


def event_list(request):
    access.require(request, "events", "list")
    view = endpoint(request, EventViewSet)
    queryset, error = selected(request, view, view.get_queryset())
    rows, next_token, page_error = keyset_page(request, view, queryset, size=100)
    return render(request, "ui/events.html", {
        "events": rows, "error": error or page_error, "next_token": next_token,
        "field_selector": request.GET.get("fieldSelector", ""),
    }, title="Events")
