"""The Fleet: a set of devices chosen by label selector that share one device template."""

from __future__ import annotations

from flightctl.models import Resource


class Fleet(Resource):
    """A group of devices selected by ``spec.selector`` that should all run ``spec.template``.

    Each device matched by exactly one fleet is owned by it (``owner: Fleet/<name>``) and gets
    the template rendered for it, rolled out according to ``spec.rolloutPolicy``. Fleets created
    by a ResourceSync are owned by it and can only be changed through git.
    """

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("fleet")
        constraints = Resource.resource_constraints("fleet")
