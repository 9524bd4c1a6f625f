"""System information the device reports about itself (``status.systemInfo``, agent.md §7.1).

Four base fields are always present (architecture, operatingSystem, agentVersion, bootID); the
``system-info`` config key selects further built-in keys and ``system-info-custom`` names
executables in ``/usr/lib/flightctl/custom-info.d`` whose output is reported as customInfo.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import uuid
from pathlib import Path

from flightctl_agent import __version__, protocol
from flightctl_agent.config import Paths

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def boot_id(paths: Paths) -> str:
    """The kernel's boot ID; a per-root override lets a test 'reboot' a simulated device."""
    for candidate in (paths("/proc/sys/kernel/random/boot_id"),
                      Path("/proc/sys/kernel/random/boot_id")):
        try:
            return candidate.read_text().strip()
        except OSError:
            continue
    return str(uuid.uuid4())


def _os_release() -> dict:
    data = {}
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            data[key] = value.strip().strip('"')
    except OSError:
        pass
    return data


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _default_route() -> tuple[str, str, str]:
    iface = ""
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                iface = fields[0]
                break
    except (OSError, IndexError):
        pass
    ip = ""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        pass
    mac = _read(f"/sys/class/net/{iface}/address") if iface else ""
    return iface, ip, mac


def collect(paths: Paths, keys: list[str], custom: list[str], timeout: float,
            cert=None, tpm_vendor: str = "") -> dict:
    """The systemInfo document for the configured keys."""
    osr = _os_release()
    info = {"architecture": _ARCH.get(platform.machine(), platform.machine()),
            "operatingSystem": platform.system().lower(), "agentVersion": __version__,
            "bootID": boot_id(paths)}
    iface, ip, mac = _default_route() if any(k.startswith("net") for k in keys) else ("",) * 3
    builtins = {
        "hostname": lambda: socket.gethostname(),
        "kernel": lambda: platform.release(),
        "distroName": lambda: osr.get("NAME", ""),
        "distroVersion": lambda: osr.get("VERSION_ID", ""),
        "distroId": lambda: osr.get("ID", ""),
        "productName": lambda: _read("/sys/class/dmi/id/product_name"),
        "productUuid": lambda: _read("/sys/class/dmi/id/product_uuid"),
        "productSerial": lambda: _read("/sys/class/dmi/id/product_serial"),
        "biosVendor": lambda: _read("/sys/class/dmi/id/bios_vendor"),
        "biosVersion": lambda: _read("/sys/class/dmi/id/bios_version"),
        "netInterfaceDefault": lambda: iface,
        "netIpDefault": lambda: ip,
        "netMacDefault": lambda: mac,
        "cpuCores": lambda: str(os.cpu_count() or 0),
        "cpuProcessors": lambda: str(os.cpu_count() or 0),
        "memoryTotalKb": lambda: _meminfo_total(),
        "managementCertSerial": lambda: protocol.cert_serial_text(cert) if cert else "",
        "managementCertNotAfter": lambda: protocol.rfc3339(cert.not_valid_after_utc)
        if cert else "",
        "tpmVendorInfo": lambda: tpm_vendor,
    }
    for key in keys:
        if key in builtins:
            value = builtins[key]()
            if value:
                info[key] = value
    if custom:
        info["customInfo"] = {key: _custom(paths, key, timeout) for key in custom}
    return info


def _meminfo_total() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return line.split()[1]
    return ""


def _custom(paths: Paths, key: str, timeout: float) -> str:
    base = paths("/usr/lib/flightctl/custom-info.d")
    for name in (key, key.lower()):
        script = base / name
        if script.is_file() and os.access(script, os.X_OK):
            try:
                r = subprocess.run([str(script)], capture_output=True, text=True,
                                   timeout=timeout or None)
            except (subprocess.TimeoutExpired, OSError):
                return ""
            return r.stdout.strip()
    return ""
