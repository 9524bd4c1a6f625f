"""The fields of EnrollmentRequests and CertificateSigningRequests a ``fieldSelector`` may name."""

from flightctl.api.selectors import Field

ENROLLMENT_REQUEST_FIELDS = {
    "status.approval.approved": Field("status__approval__approved", "bool"),
    "status.certificate": Field("status__certificate"),
}

CERTIFICATE_SIGNING_REQUEST_FIELDS = {
    "status.certificate": Field("status__certificate"),
    "spec.signerName": Field("spec__signerName"),
}
