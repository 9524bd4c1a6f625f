"""Enrollment: EnrollmentRequests and CertificateSigningRequests (see the identity issue)."""
