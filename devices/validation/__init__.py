"""Hand-written validation of Device specs and statuses (Flight Control v1beta1).

The reference server reports spec problems as Kubernetes-style field errors that clients and
e2e tests match on, so this package checks a DeviceSpec rule by rule and reports through
:class:`flightctl.api.validation.Errors`. Modules: ``spec`` (entry point, os, systemd,
template placeholders), ``config`` (config providers), ``applications`` and ``app_content``
(workloads), ``monitors`` (resource monitors), ``schedule`` (update policy), ``status``.
"""

from .common import FORBIDDEN_DEVICE_PATH_ROOTS
from .spec import validate_device_spec
from .status import validate_device_status

__all__ = ["FORBIDDEN_DEVICE_PATH_ROOTS", "validate_device_spec", "validate_device_status"]
