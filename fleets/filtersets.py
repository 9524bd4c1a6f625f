"""The fields of a Fleet a ``fieldSelector`` may name."""

from flightctl.api.selectors import Field

FLEET_FIELDS = {
    "spec.template.spec.os.image": Field("spec__template__spec__os__image"),
}
