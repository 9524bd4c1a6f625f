"""The agent's wire protocol as pure functions: no I/O, no clock unless passed in.

These build and parse the documents exchanged with the agent API (agent.md §2, §4, §7, §8.6)
so that the blocking agent and an asyncio device simulator produce byte-identical requests.

The few functions that handle keys and CSRs import ``cryptography`` when called: the running
agent never calls them (``flightctl_agent.softkey`` does, in a child process), and importing
the library would cost it ~10 MB of RSS for its whole life.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

API_VERSION = "v1beta1"
API_GROUP_VERSION = "flightctl.io/v1beta1"
API_VERSION_HEADER = "Flightctl-API-Version"
RENDERED_VERSION_ANNOTATION = "device-controller/renderedVersion"
RENDERED_SPEC_HASH_ANNOTATION = "device-controller/renderedSpecHash"
CONFLICT_PAUSED_ANNOTATION = "device-controller/conflictPaused"
RENEWAL_SIGNER = "flightctl.io/device-management-renewal"
MAX_CONDITION_MESSAGE = 250


# --- identity -----------------------------------------------------------------------------

def public_key_bytes(public_key) -> bytes:
    """The bytes the device name is hashed from: X‖Y (minimal big-endian) or the RSA modulus."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        return _minimal(numbers.x) + _minimal(numbers.y)
    if isinstance(public_key, rsa.RSAPublicKey):
        return _minimal(public_key.public_numbers().n)
    raise TypeError(f"unsupported public key type {type(public_key).__name__}")


def _minimal(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def device_name(public_key) -> str:
    """The device's name: lowercase unpadded base32hex of SHA-256 over its public key."""
    return device_name_of_bytes(public_key_bytes(public_key))


def device_name_of_bytes(key_bytes: bytes) -> str:
    """The device's name from ``public_key_bytes`` (e.g. as ``certinfo`` read them)."""
    digest = hashlib.sha256(key_bytes).digest()
    return base64.b32hexencode(digest).decode().rstrip("=").lower()


def build_csr(private_key, common_name: str) -> bytes:
    """A PKCS#10 certificate request (PEM), subject CN=<device name>, signed ECDSA-SHA256."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
           .sign(private_key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_common_name(csr_pem: bytes) -> str | None:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError:
        return None
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


def cert_serial_text(cert) -> str:
    """``managementCertSerial``: the serial's bytes as uppercase hex joined by colons (of a
    ``certinfo.CertificateInfo`` or a ``cryptography`` certificate)."""
    raw = _minimal(cert.serial_number)
    return ":".join(f"{b:02X}" for b in raw)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- labels -------------------------------------------------------------------------------

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_UNUSABLE_HOSTS = ("", "(none)", "127.0.0.1", "::1")


def sanitize_label_value(value: str) -> str:
    """Replace characters outside ``[A-Za-z0-9-_.]`` with ``-``, trim, cap at 63 characters."""
    text = re.sub(r"[^A-Za-z0-9\-_.]", "-", str(value))
    text = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)
    return re.sub(r"[^A-Za-z0-9]+$", "", text[:63])


def valid_label(key: str, value: str) -> bool:
    return (bool(_LABEL_KEY.match(str(key))) and len(str(key).split("/")[-1]) <= 63
            and bool(_LABEL_VALUE.match(str(value))) and len(str(value)) <= 63)


def enrollment_labels(default_labels: dict, label_from_systeminfo: dict,
                      system_info: dict) -> tuple[dict, list]:
    """The labels an enrollment request asks for, and the reasons any were dropped."""
    labels, problems = {}, []
    for key, field_name in (label_from_systeminfo or {}).items():
        field_name = str(field_name)
        if field_name.startswith("customInfo."):
            raw = (system_info.get("customInfo") or {}).get(field_name.split(".", 1)[1])
        else:
            raw = system_info.get(field_name)
        if raw is None:
            continue
        value = sanitize_label_value(raw)
        if valid_label(key, value) and value:
            labels[key] = value
        else:
            problems.append(f"label {key!r} from {field_name!r} is invalid")
    if "alias" not in labels and "alias" not in (default_labels or {}):
        host = str(system_info.get("hostname") or "")
        if host not in _UNUSABLE_HOSTS and not host.startswith("localhost"):
            alias = sanitize_label_value(host)
            if alias and valid_label("alias", alias):
                labels["alias"] = alias
    for key, value in (default_labels or {}).items():
        if valid_label(key, str(value)):
            labels[key] = str(value)
        else:
            problems.append(f"default label {key}={value!r} is invalid")
    return labels, problems


# --- enrollment ---------------------------------------------------------------------------

def enrollment_request_body(name: str, csr: str, device_status: dict, labels: dict,
                            os_mode: str | None, known_rendered_version: str | None) -> dict:
    """``POST /api/v1/enrollmentrequests`` body (agent.md §2.2)."""
    spec = {"csr": csr, "deviceStatus": device_status, "labels": labels}
    if known_rendered_version and known_rendered_version != "0":
        spec["knownRenderedVersion"] = known_rendered_version
    if os_mode:
        spec["osMode"] = os_mode
    return {"apiVersion": API_VERSION, "kind": "EnrollmentRequest",
            "metadata": {"name": name}, "spec": spec}


@dataclass
class EnrollmentState:
    """What a polled EnrollmentRequest says: approved with a certificate, pending, or refused."""

    approved: bool = False
    denied: bool = False
    failed: bool = False
    certificate: str | None = None
    tpm_challenge_pending: bool = False
    message: str = ""


def parse_enrollment_request(body: dict) -> EnrollmentState:
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    state = EnrollmentState(certificate=status.get("certificate") or None)
    state.denied = conditions.get("Denied", {}).get("status") == "True"
    state.failed = conditions.get("Failed", {}).get("status") == "True"
    approved = conditions.get("Approved", {}).get("status") == "True"
    state.approved = approved or bool((status.get("approval") or {}).get("approved"))
    tpm = conditions.get("TPMVerified")
    state.tpm_challenge_pending = bool(tpm and tpm.get("status") != "True"
                                       and tpm.get("reason") != "TPMVerificationFailed")
    state.message = "; ".join(c.get("message", "") for c in conditions.values()
                              if c.get("message"))
    return state


# --- certificate renewal ------------------------------------------------------------------

def renewal_csr_body(device: str, csr_pem: bytes, signer: str = RENEWAL_SIGNER,
                     suffix: str | None = None) -> dict:
    """``POST /api/v1/certificatesigningrequests`` body; the request is base64 (JSON bytes)."""
    return {"apiVersion": API_VERSION, "kind": "CertificateSigningRequest",
            "metadata": {"name": f"{device}-{suffix or uuid.uuid4().hex[:8]}"},
            "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": signer,
                     "usages": ["clientAuth", "CA:false"]}}


def parse_csr_certificate(body: dict) -> tuple[str, bytes | None]:
    """("approved"|"denied"|"failed"|"pending", certificate PEM once issued)."""
    status = body.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Denied") == "True":
        return "denied", None
    if conditions.get("Failed") == "True":
        return "failed", None
    cert = status.get("certificate")
    if conditions.get("Approved") == "True" and cert:
        data = cert.encode() if isinstance(cert, str) else cert
        # CSR certificates are JSON bytes (base64 of PEM); accept a plain PEM as well.
        return "approved", data if data.startswith(b"-----") else base64.b64decode(data)
    return "pending", None


# --- rendered spec ------------------------------------------------------------------------

@dataclass
class RenderedSpec:
    """One rendered version of the device spec as the service delivered it."""

    version: int
    spec: dict = field(default_factory=dict)
    spec_hash: str = ""
    annotations: dict = field(default_factory=dict)
    document: dict = field(default_factory=dict)

    @property
    def conflict_paused(self) -> bool:
        return self.annotations.get(CONFLICT_PAUSED_ANNOTATION) == "true"


def spec_hash(spec: dict) -> str:
    """A stable hash of the substantive spec (consoles excluded) when the service sends none."""
    body = {k: v for k, v in (spec or {}).items() if k != "consoles"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def parse_rendered(document: dict) -> RenderedSpec:
    """Parse ``GET /devices/{name}/rendered`` (or a stored spec file) into a RenderedSpec."""
    metadata = document.get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    raw = annotations.get(RENDERED_VERSION_ANNOTATION, "0") or "0"
    try:
        version = int(raw)
    except ValueError as e:
        raise ValueError(f"invalid renderedVersion {raw!r}") from e
    spec = document.get("spec") or {}
    return RenderedSpec(version=version, spec=spec,
                        spec_hash=annotations.get(RENDERED_SPEC_HASH_ANNOTATION) or spec_hash(spec),
                        annotations=annotations, document=document)


def spec_document(version: int | str, spec: dict | None = None,
                  annotations: dict | None = None) -> dict:
    """A stored spec file: a Device with the rendered version annotation and a spec."""
    ann = dict(annotations or {})
    ann[RENDERED_VERSION_ANNOTATION] = str(version)
    return {"metadata": {"annotations": ann}, "spec": copy.deepcopy(spec or {})}


def inline_files(spec: dict) -> list[dict]:
    """Every file of the spec's inline providers in order (the last one for a path wins)."""
    files: dict[str, dict] = {}
    for provider in spec.get("config") or []:
        for f in provider.get("inline") or []:
            files[f["path"]] = f
    return list(files.values())


# --- status -------------------------------------------------------------------------------

def condition(type_: str, status: bool, reason: str, message: str = "",
              now: datetime | None = None) -> dict:
    return {"type": type_, "status": "True" if status else "False", "reason": reason,
            "message": message[:MAX_CONDITION_MESSAGE],
            "lastTransitionTime": rfc3339(now or datetime.now(UTC))}


def merge_condition(conditions: list[dict], new: dict) -> tuple[list[dict], bool]:
    """Replace the condition of the same type; keep its transition time if status is unchanged."""
    out, changed = [], True
    for c in conditions:
        if c["type"] != new["type"]:
            out.append(c)
            continue
        if c["status"] == new["status"]:
            new = {**new, "lastTransitionTime": c["lastTransitionTime"]}
        changed = {k: c.get(k) for k in ("status", "reason", "message")} != \
                  {k: new.get(k) for k in ("status", "reason", "message")}
    out.append(new)
    return out, changed


def status_document(name: str, status: dict) -> dict:
    """``PUT /devices/{name}/status`` body: the whole Device with only its status filled."""
    return {"apiVersion": API_VERSION, "kind": "Device", "metadata": {"name": name},
            "status": status}


def empty_status() -> dict:
    """Every required DeviceStatus field, with the agent-side defaults."""
    return {
        "conditions": [], "systemInfo": {}, "applications": [],
        "applicationsSummary": {"status": "NoApplications",
                                "info": "Device has not reported any application workloads yet."},
        "resources": {"cpu": "Healthy", "memory": "Healthy", "disk": "Healthy"},
        "integrity": {"status": "Unknown"},
        "config": {"renderedVersion": "0"},
        "os": {"image": "", "imageDigest": ""},
        "updated": {"status": "Unknown"},
        "summary": {"status": "Online", "info": "Device's system resources are healthy."},
        "lifecycle": {"status": "Unknown"},
    }


def structured_error_message(phase: str, component: str, element: str | None, text: str,
                             now: datetime | None = None) -> str:
    """``[ts] While <Phase>: <component> failed[ for <element>]: <text>``, at most 250 chars."""
    ts = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S")
    target = ""
    if element:
        target = f" for {'...' + element[-64:] if len(element) > 64 else element}"
    message = f"[{ts}] While {phase}: {component} failed{target}: {text}"
    return message[:MAX_CONDITION_MESSAGE]
