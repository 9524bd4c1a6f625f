"""The pages behind the URLs the agent prints: ``/enroll/<name>`` and ``/manage/<name>``.

The agent shows a device's owner ``<enrollment-ui-endpoint>/enroll/<name>`` while it waits for
approval and ``/manage/<name>`` once enrolled (the server's enrollment config sets that endpoint
to the user API). Until the web console has pages of its own, each URL leads, after an admin
login, to the admin page of that enrollment request or device. The apps map the URLs
(``enrollment/console.py``, ``devices/console.py``); this module only knows models.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponseNotFound, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import escape


def admin_page_of(model, what: str):
    """A view redirecting ``<name>`` to the admin page of the ``model`` object so named."""

    @staff_member_required
    def view(request, name: str):
        meta = model._meta
        # Names are unique per organization: several organizations may each have one.
        pks = list(model.objects.filter(name=name).values_list("pk", flat=True)[:2])
        if not pks:
            return HttpResponseNotFound(f"<h1>No {escape(what)} named {escape(name)}</h1>")
        if len(pks) > 1:
            url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
            return HttpResponseRedirect(f"{url}?{urlencode({'q': name})}")
        return HttpResponseRedirect(
            reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pks[0]]))

    return view
