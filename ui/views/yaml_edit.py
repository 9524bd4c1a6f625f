"""Create and edit a resource from its YAML, through the API's own validation: the document
is what ``POST``/``PUT`` would receive, and the API's error is shown above the editor, with
the text kept as typed."""

from __future__ import annotations

import yaml
from django.shortcuts import redirect

from flightctl.api.errors import ApiError
from ui import access
from ui.views.common import endpoint, found, render, to_yaml


def edit_resource(request, viewset, name: str | None, *, resource: str, kind: str, page: str,
                  title: str, example: str):
    """The editor for ``name`` (None: a new object). It shows the API's representation, so
    secrets read ``*****`` and the API keeps the stored one when it gets that back."""
    access.require(request, resource, "update" if name else "create")
    view = endpoint(request, viewset)
    error = None
    if request.method == "POST":
        text = request.POST.get("document", "")
        try:
            document = yaml.safe_load(text)
            if not isinstance(document, dict):
                raise ApiError(400, "the document must be a YAML mapping (an API object)")
            if name:
                obj, _ = view.replace_object(name, document)
            else:
                obj = view.create_object(document)
        except yaml.YAMLError as exc:
            error = f"not valid YAML: {exc}"
        except ApiError as exc:
            error = exc.message
        else:
            from django.contrib import messages

            messages.success(request, f"{kind} {obj.name} saved.")
            return redirect(page, obj.name)
    elif name:
        body = view.represent(found(view, name))
        body.pop("status", None)
        # What the user writes: the service's own metadata (annotations, generation, owner,
        # timestamps) stays out of the editor; resourceVersion stays, so a concurrent change
        # is refused (409) rather than overwritten.
        body["metadata"] = {key: value for key, value in body["metadata"].items()
                            if key in ("name", "labels", "resourceVersion")}
        text = to_yaml(body)
    else:
        text = example
    return render(request, "ui/yaml_edit.html", {
        "document": text, "error": error, "name": name, "kind": kind,
    }, title=f"Edit {title} {name}" if name else f"New {title}", status=400 if error else 200)
