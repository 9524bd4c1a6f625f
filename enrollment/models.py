"""Enrollment: how a device and its certificates come to be trusted."""

from __future__ import annotations

from django.db import models

from flightctl.models import Resource


class EnrollmentRequest(Resource):
    """A device asking to join the service: its CSR, its system info and the labels it proposes.

    The agent creates it over the agent API with the shared enrollment certificate; the request
    is named after the device (the fingerprint of its identity key) and waits — the "waiting
    room" — until a user approves or denies it. Approval signs the device's management
    certificate and creates the Device in one transaction.

    State machine (enforced in :mod:`enrollment.services`)::

        Pending ──approve──▶ Approved   (status.certificate set, Device created; final)
           └─────deny─────▶ Denied     (final; delete the request to let the device retry)

    A request whose ``spec.csr`` is a TCG CSR also carries the ``TPMVerified`` condition::

        (create) ─chain+certify ok─▶ False/TPMChallengeRequired ─right secret─▶ True/Succeeded
              └──────any failure───▶ False/TPMVerificationFailed (final)
                                     TPMChallengeRequired ─wrong secret─▶ False/ChallengeFailed
                                     TPMChallengeFailed ─new challenge, right secret─▶ True

    ``tpm_challenge_digest`` holds the SHA-256 of the outstanding challenge secret (never the
    secret itself) until it is answered or expires.
    """

    tpm_challenge_digest = models.CharField(max_length=64, blank=True)
    tpm_challenge_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("enrollmentrequest")
        constraints = Resource.resource_constraints("enrollmentrequest")


class CertificateSigningRequest(Resource):
    """A request for a certificate from one of the service's signers, modelled on Kubernetes.

    ``spec.request`` is the base64 of a PEM PKCS#10 request, ``spec.signerName`` picks the
    signer (:mod:`enrollment.signers`). Users request enrollment certificates for agents
    (auto-approved); devices request renewals of their management certificate over the agent
    API (auto-approved, owned by ``Device/<name>``).

    State machine (enforced in :mod:`enrollment.services`)::

        Pending ──approve──▶ Approved ──signed──▶ status.certificate set (final)
           │                     └──signing error──▶ Failed (final)
           └─────deny─────▶ Denied (final)
    """

    class Meta:
        ordering = ["name"]
        indexes = Resource.resource_indexes("csr")
        constraints = Resource.resource_constraints("csr")
