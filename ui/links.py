"""The URLs the agent prints for a device's owner: ``/enroll/<name>`` while it waits for
approval, ``/manage/<name>`` once enrolled (the server's enrollment config points the agent's
``enrollment-ui-endpoint`` at the user API). Each leads to the console's page of that
enrollment request or device, through the console's login when there is no session yet."""

from __future__ import annotations

from django.http import HttpResponseRedirect
from django.urls import path, reverse


def _to(page: str):
    def view(request, name: str):
        return HttpResponseRedirect(reverse(f"admin:{page}", args=[name]))

    return view


urlpatterns = [
    path("enroll/<str:name>", _to("ui-enrollmentrequest"), name="enroll"),
    path("manage/<str:name>", _to("ui-device"), name="manage"),
]
