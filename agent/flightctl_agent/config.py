"""Agent configuration: ``/etc/flightctl/config.yaml`` plus ``conf.d/`` drop-ins.

The configuration is the device owner's statement of where the service is and how the agent
should behave. Keys are kebab-case as in the reference agent (agent.md §1). Every path the agent
touches lives under a *root* (``FLIGHTCTL_TEST_ROOT_DIR``), so many agents can share one machine.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TEST_ROOT_ENV = "FLIGHTCTL_TEST_ROOT_DIR"
CONFIG_DIR = "/etc/flightctl"
DATA_DIR = "/var/lib/flightctl"
DEFAULT_CONFIG_FILE = "/etc/flightctl/config.yaml"
DEFAULT_SERVER = "https://localhost:7443"

DEFAULT_SYSTEM_INFO = [
    "hostname", "kernel", "distroName", "distroVersion", "distroId", "productName",
    "productUuid", "productSerial", "netInterfaceDefault", "netIpDefault", "netMacDefault",
    "managementCertNotAfter", "managementCertSerial", "tpmVendorInfo",
]
LOG_LEVELS = {"panic", "fatal", "error", "warn", "warning", "info", "debug", "trace"}

# Keys a drop-in may change (agent.md §1.3); anything else in a drop-in is ignored.
_DROP_IN_SCALARS = {
    "log-level", "log-prefix", "spec-fetch-error-base-delay", "spec-fetch-error-max-delay",
    "status-update-jitter", "system-info", "system-info-custom", "system-info-timeout",
    "metrics-enabled", "profiling-enabled",
}
_DROP_IN_MAPS = {"default-labels", "label-from-systeminfo"}
_DROP_IN_NESTED = {"tpm": {"enabled", "auth-enabled", "device-path", "storage-file-path"},
                   "audit": {"enabled"}, "image-pruning": {"enabled"}}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key."""


def parse_duration(value, key: str = "duration") -> float:
    """Seconds in a Go duration string such as ``"0m2s"``, ``"5m"`` or ``"1h30m"``."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text == "0":
        return 0.0
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"{key}: invalid duration {value!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


class Paths:
    """Maps the reference's absolute device paths below the agent's root directory."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else Path("/")

    def __call__(self, path: str) -> Path:
        return self.root / str(path).lstrip("/")

    @property
    def data_dir(self) -> Path:
        return self(DATA_DIR)

    @property
    def config_dir(self) -> Path:
        return self(CONFIG_DIR)

    @property
    def certs_dir(self) -> Path:
        return self(DATA_DIR + "/certs")


@dataclass
class ServiceConfig:
    """One service block (``enrollment-service`` / ``management-service``): where and as whom."""

    server: str = DEFAULT_SERVER
    tls_server_name: str = ""
    ca_file: Path | None = None
    ca_data: bytes | None = None
    client_cert: Path | None = None
    client_cert_data: bytes | None = None
    client_key: Path | None = None
    client_key_data: bytes | None = None
    insecure_skip_verify: bool = False
    ui_endpoint: str = ""

    def ca_pem(self) -> bytes | None:
        if self.ca_data:
            return self.ca_data
        return self.ca_file.read_bytes() if self.ca_file and self.ca_file.exists() else None

    def cert_pem(self) -> bytes | None:
        if self.client_cert_data:
            return self.client_cert_data
        return self.client_cert.read_bytes() if self.client_cert and self.client_cert.exists() \
            else None

    def key_pem(self) -> bytes | None:
        if self.client_key_data:
            return self.client_key_data
        return self.client_key.read_bytes() if self.client_key and self.client_key.exists() \
            else None


@dataclass
class TPMConfig:
    """The ``tpm`` block: whether the device identity lives in a TPM, and where."""

    enabled: bool = False
    device_path: str = "/dev/tpm0"
    auth_enabled: bool = False
    storage_file_path: str = DATA_DIR + "/tpm-blob.yaml"


@dataclass
class AgentConfig:
    """The effective agent configuration after config.yaml and drop-ins are merged."""

    paths: Paths
    config_file: Path
    enrollment: ServiceConfig
    management: ServiceConfig
    spec_fetch_interval: float = 60.0
    spec_fetch_error_base_delay: float = 5.0
    spec_fetch_error_max_delay: float = 300.0
    status_update_interval: float = 60.0
    status_update_jitter: float | None = None
    enrollment_verify_interval: float = 10.0
    enrollment_verify_cap: float = 60.0
    # Accepted for the reference's configs; the wait for approval no longer ends (enroll.py).
    enrollment_verify_steps: int = 6
    default_labels: dict = field(default_factory=dict)
    label_from_systeminfo: dict = field(default_factory=dict)
    system_info: list = field(default_factory=lambda: list(DEFAULT_SYSTEM_INFO))
    system_info_custom: list = field(default_factory=list)
    system_info_timeout: float = 120.0
    pull_timeout: float = 600.0
    pull_retry_steps: int = 6
    log_level: str = "info"
    log_prefix: str = ""
    metrics_enabled: bool = False
    profiling_enabled: bool = False
    audit_enabled: bool = True
    image_pruning_enabled: bool = False
    tpm: TPMConfig = field(default_factory=TPMConfig)
    #: The unprivileged user remote console sessions run as (the reference's fixed
    #: ``flightctl-console``); an agent that is not root runs them as itself.
    console_user: str = "flightctl-console"
    #: Drop-ins that could not be read or parsed; reported in status as a Degraded summary.
    warnings: list = field(default_factory=list)

    @property
    def agent_cert(self) -> Path:
        return self.paths.certs_dir / "agent.crt"

    @property
    def agent_key(self) -> Path:
        return self.paths.certs_dir / "agent.key"

    @property
    def agent_csr(self) -> Path:
        return self.paths.certs_dir / "agent.csr"


def _b64(value) -> bytes | None:
    return base64.b64decode(value) if value else None


def _service(block: dict | None, base_dir: Path, paths: Paths, key: str,
             fallback: ServiceConfig | None = None, with_auth: bool = True) -> ServiceConfig:
    block = block or {}
    service = block.get("service") or {}
    auth = (block.get("authentication") or {}) if with_auth else {}

    def file(value):
        if not value:
            return None
        p = Path(value)
        # Relative paths are relative to the config file (agent.md §1.2); absolute ones are
        # device paths and so live under the root.
        return base_dir / p if not p.is_absolute() else paths(str(p))

    if fallback is not None and not service:
        s = ServiceConfig(**{**fallback.__dict__})
        s.client_cert = s.client_key = None
        s.client_cert_data = s.client_key_data = None
        return s
    cfg = ServiceConfig(
        server=str(service.get("server") or DEFAULT_SERVER).rstrip("/"),
        tls_server_name=service.get("tls-server-name") or "",
        ca_file=file(service.get("certificate-authority")),
        ca_data=_b64(service.get("certificate-authority-data")),
        client_cert=file(auth.get("client-certificate")),
        client_cert_data=_b64(auth.get("client-certificate-data")),
        client_key=file(auth.get("client-key")),
        client_key_data=_b64(auth.get("client-key-data")),
        insecure_skip_verify=bool(service.get("insecureSkipVerify", False)),
        ui_endpoint=str(block.get("enrollment-ui-endpoint") or ""),
    )
    if not cfg.ca_file and not cfg.ca_data:
        cfg.ca_file = paths(CONFIG_DIR + "/certs/ca.crt")
    if key == "enrollment-service" and not (cfg.client_cert or cfg.client_cert_data):
        cfg.client_cert = paths(DATA_DIR + "/certs/client-enrollment.crt")
        cfg.client_key = paths(DATA_DIR + "/certs/client-enrollment.key")
    cfg.ui_endpoint = cfg.ui_endpoint or cfg.server
    return cfg


def _merge_drop_in(raw: dict, drop: dict) -> None:
    for key, value in drop.items():
        if key in _DROP_IN_SCALARS:
            raw[key] = value
        elif key in _DROP_IN_MAPS and isinstance(value, dict):
            raw[key] = {**(raw.get(key) or {}), **value}
        elif key in _DROP_IN_NESTED and isinstance(value, dict):
            nested = dict(raw.get(key) or {})
            nested.update({k: v for k, v in value.items() if k in _DROP_IN_NESTED[key]})
            raw[key] = nested


def load(config_file: str | os.PathLike | None = None, root: str | None = None) -> AgentConfig:
    """Read config.yaml and its drop-ins; raise ConfigError on an invalid main file."""
    root = root if root is not None else os.environ.get(TEST_ROOT_ENV)
    paths = Paths(root)
    path = Path(config_file) if config_file else paths(DEFAULT_CONFIG_FILE)
    raw: dict = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping")
    warnings = []
    conf_d = path.parent / "conf.d"
    if conf_d.is_dir():
        for drop_in in sorted(conf_d.iterdir()):
            if drop_in.suffix not in (".yaml", ".yml") or not drop_in.is_file():
                continue
            try:
                drop = yaml.safe_load(drop_in.read_text()) or {}
                if not isinstance(drop, dict):
                    raise ValueError("expected a mapping")
                candidate = dict(raw)
                _merge_drop_in(candidate, drop)
                _build(candidate, path, paths, [])  # an invalid value rejects the whole drop-in
                raw = candidate
            except (OSError, ValueError, yaml.YAMLError) as e:
                warnings.append(f"skipped config drop-in {drop_in.name}: {e}")
    return _build(raw, path, paths, warnings)


def _build(raw: dict, path: Path, paths: Paths, warnings: list) -> AgentConfig:
    base_dir = path.parent
    enrollment = _service(raw.get("enrollment-service"), base_dir, paths, "enrollment-service")
    management = _service(raw.get("management-service"), base_dir, paths, "management-service",
                          fallback=enrollment)
    if not (management.client_cert or management.client_cert_data):
        management.client_cert = paths(DATA_DIR + "/certs/agent.crt")
        management.client_key = paths(DATA_DIR + "/certs/agent.key")

    def dur(key, default, minimum=2.0):
        value = parse_duration(raw[key], key) if key in raw else default
        if minimum is not None and value is not None and value < minimum:
            raise ConfigError(f"{key}: must be at least {minimum:g}s")
        return value

    tpm_raw = raw.get("tpm") or {}
    cfg = AgentConfig(
        paths=paths, config_file=path, enrollment=enrollment, management=management,
        spec_fetch_interval=dur("spec-fetch-interval", 60.0),
        spec_fetch_error_base_delay=dur("spec-fetch-error-base-delay", 5.0),
        spec_fetch_error_max_delay=dur("spec-fetch-error-max-delay", 300.0),
        status_update_interval=dur("status-update-interval", 60.0),
        status_update_jitter=dur("status-update-jitter", None, minimum=0),
        enrollment_verify_interval=dur("enrollment-verify-interval", 10.0),
        enrollment_verify_cap=dur("enrollment-verify-cap", 60.0),
        enrollment_verify_steps=int(raw.get("enrollment-verify-steps", 6)),
        default_labels=dict(raw.get("default-labels") or {}),
        label_from_systeminfo=dict(raw.get("label-from-systeminfo") or {}),
        system_info=list(raw["system-info"]) if raw.get("system-info") is not None
        else list(DEFAULT_SYSTEM_INFO),
        system_info_custom=list(raw.get("system-info-custom") or []),
        system_info_timeout=dur("system-info-timeout", 120.0, minimum=0),
        pull_timeout=dur("pull-timeout", 600.0, minimum=0),
        pull_retry_steps=int(raw.get("pull-retry-steps", 6)),
        log_level=str(raw.get("log-level", "info")).lower(),
        log_prefix=str(raw.get("log-prefix", "")),
        metrics_enabled=bool(raw.get("metrics-enabled", False)),
        profiling_enabled=bool(raw.get("profiling-enabled", False)),
        audit_enabled=bool((raw.get("audit") or {}).get("enabled", True)),
        image_pruning_enabled=bool((raw.get("image-pruning") or {}).get("enabled", False)),
        tpm=TPMConfig(
            enabled=bool(tpm_raw.get("enabled", False)),
            device_path=str(tpm_raw.get("device-path") or "/dev/tpm0"),
            auth_enabled=bool(tpm_raw.get("auth-enabled", False)),
            storage_file_path=str(tpm_raw.get("storage-file-path")
                                  or DATA_DIR + "/tpm-blob.yaml"),
        ),
        console_user=str(raw.get("console-user") or "flightctl-console"),
        warnings=warnings,
    )
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log-level: must be one of {', '.join(sorted(LOG_LEVELS))}")
    if cfg.spec_fetch_error_max_delay < cfg.spec_fetch_error_base_delay:
        raise ConfigError("spec-fetch-error-max-delay: must not be less than the base delay")
    if cfg.status_update_jitter is None:
        cfg.status_update_jitter = cfg.status_update_interval
    if not 0 <= cfg.status_update_jitter <= cfg.status_update_interval:
        raise ConfigError("status-update-jitter: must be between 0 and status-update-interval")
    if cfg.enrollment_verify_steps < 1:
        raise ConfigError("enrollment-verify-steps: must be at least 1")
    if cfg.tpm.auth_enabled and not cfg.tpm.enabled:
        raise ConfigError("tpm.auth-enabled: requires tpm.enabled")
    if cfg.system_info_timeout > 120:
        raise ConfigError("system-info-timeout: must be at most 2m")
    return cfg
