"""Errors of an update attempt, tagged with where they happened and whether to retry.

An update fails *while* in a phase (Preparing, ApplyingUpdate, Rebooting), in a component
(prefetch, hooks, config, applications, os, ...) and for an element (a file path, an image).
Whether the version is retried or marked failed depends only on the retryable flag
(agent.md §4.6).
"""

from __future__ import annotations

PREPARING = "Preparing"
APPLYING = "ApplyingUpdate"
REBOOTING = "Rebooting"

# Status texts of the reference's gRPC-code mapping.
INVALID = "invalid configuration or input"
NOT_FOUND = "required resource not found"
PERMISSION = "permission denied"
UNAVAILABLE = "service unavailable (network issue)"
INTERNAL = "internal error occurred"
AUTH = "authentication failed"
PRECONDITION = "precondition not met (waiting for dependencies)"

_NETWORK_HINTS = ("connection refused", "connection reset", "timeout", "timed out",
                  "temporary failure", "no route to host", "network is unreachable", "eof",
                  "i/o timeout", "tls handshake")
_NOT_FOUND_HINTS = ("manifest unknown", "not found", "no such", "name unknown",
                    "does not exist", "unknown user", "unknown group")
_AUTH_HINTS = ("unauthorized", "authentication required", "denied:")


class UpdateError(Exception):
    """A failure during one reconciliation, with its phase, component and element."""

    def __init__(self, component: str, message: str, *, element: str | None = None,
                 retryable: bool = False, status_text: str | None = None,
                 phase: str | None = None):
        super().__init__(message)
        self.component = component
        self.element = element
        self.retryable = retryable
        self.status_text = status_text or classify(message)
        self.phase = phase

    def __str__(self):
        where = f"{self.phase}: " if self.phase else ""
        target = f" for {self.element}" if self.element else ""
        return f"{where}{self.component}{target}: {self.args[0]}"


class NotReady(UpdateError):
    """A condition the update waits for (schedule, prefetch, critical alert): always retried."""

    def __init__(self, component: str, message: str, **kw):
        super().__init__(component, message, retryable=True, status_text=PRECONDITION, **kw)


def classify(message: str) -> str:
    """Map raw error text to the reference's status text for the condition message."""
    text = message.lower()
    if any(h in text for h in _AUTH_HINTS):
        return AUTH
    if any(h in text for h in _NOT_FOUND_HINTS):
        return NOT_FOUND
    if "permission denied" in text or "operation not permitted" in text:
        return PERMISSION
    if any(h in text for h in _NETWORK_HINTS):
        return UNAVAILABLE
    if "invalid" in text:
        return INVALID
    return INTERNAL


def is_network_error(message: str) -> bool:
    text = message.lower()
    return any(h in text for h in _NETWORK_HINTS) and not any(h in text for h in _NOT_FOUND_HINTS)
