"""The shape of a device's status before its agent has reported anything."""

from __future__ import annotations

import copy

_INITIAL = {
    "conditions": [],
    "systemInfo": {"architecture": "", "bootID": "", "operatingSystem": "", "agentVersion": ""},
    "applications": [],
    "applicationsSummary": {"status": "Unknown"},
    "resources": {"cpu": "Unknown", "memory": "Unknown", "disk": "Unknown"},
    "integrity": {"status": "Unknown"},
    "config": {"renderedVersion": ""},
    "os": {"image": "", "imageDigest": ""},
    "updated": {"status": "Unknown"},
    "summary": {"status": "Unknown", "info": "Device has not reported yet."},
    "lifecycle": {"status": "Unknown"},
}


def initial_status() -> dict:
    return copy.deepcopy(_INITIAL)


def complete_status(status: dict | None) -> dict:
    """Fill in every required DeviceStatus member that ``status`` lacks."""
    result = initial_status()
    for key, value in (status or {}).items():
        result[key] = value
    return result
