"""API representation and input checks of EnrollmentRequest and CertificateSigningRequest."""

from __future__ import annotations

from devices.choices import OsMode
from flightctl.api.serializers import ResourceSerializer
from flightctl.api.validation import Errors


class EnrollmentRequestSerializer(ResourceSerializer):
    """Envelope plus ``EnrollmentRequestSpec`` checks; status always has ``conditions``."""

    kind = "EnrollmentRequest"

    def status_representation(self, obj) -> dict:
        return {"conditions": [], **(obj.status or {})}

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        csr = spec.get("csr")
        if not isinstance(csr, str) or not csr.strip():
            errors.required("spec.csr")
        device_status = spec.get("deviceStatus")
        if device_status is not None and not isinstance(device_status, dict):
            errors.invalid("spec.deviceStatus", device_status, "must be an object")
        errors.labels("spec.labels", spec.get("labels"))
        known = spec.get("knownRenderedVersion")
        if known is not None and not isinstance(known, str):
            errors.invalid("spec.knownRenderedVersion", known, "must be a string")
        os_mode = spec.get("osMode")
        if os_mode is not None and os_mode not in OsMode.values:
            errors.unsupported("spec.osMode", os_mode, list(OsMode.values))


class CertificateSigningRequestSerializer(ResourceSerializer):
    """Envelope plus ``CertificateSigningRequestSpec`` checks; status always has conditions."""

    kind = "CertificateSigningRequest"

    def status_representation(self, obj) -> dict:
        return {"conditions": [], **(obj.status or {})}

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        request = spec.get("request")
        if not isinstance(request, str) or not request:
            errors.required("spec.request")
        signer = spec.get("signerName")
        if not isinstance(signer, str) or not signer:
            errors.required("spec.signerName")
        seconds = spec.get("expirationSeconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)
                                    or not 0 < seconds < 2**31):
            errors.invalid("spec.expirationSeconds", seconds, "must be a positive int32")
        usages = spec.get("usages")
        if usages is not None and (not isinstance(usages, list)
                                   or not all(isinstance(u, str) for u in usages)):
            errors.invalid("spec.usages", usages, "must be a list of strings")
