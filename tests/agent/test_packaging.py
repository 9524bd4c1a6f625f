"""The agent's RPM, built from its wheel the way ``make rpm`` builds it, and installed into a
scratch root the way a device installs it (``rpm --root ... -i``): the scriptlets run there,
against a stand-in ``systemctl`` that records its calls (systemd is not PID 1 here)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.harness import require_tool

ROOT = Path(__file__).resolve().parents[2]
UNIT = "/usr/lib/systemd/system/flightctl-agent.service"
# Debian's rpm says this on every install into a root of its own.
DEBIAN_RPM_NOTE = ("RPM should not be used directly", "However assuming you know")


@pytest.fixture(scope="module")
def rpm_file(tmp_path_factory):
    require_tool("rpmbuild")
    out = tmp_path_factory.mktemp("rpm")
    built = subprocess.run(["bash", str(ROOT / "agent/packaging/build-rpm.sh"), str(out)],
                           env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                "PYTHON": sys.executable, "HOME": str(out)},
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return Path(built.stdout.strip().splitlines()[-1])


def test_the_rpm_lists_the_binary_the_unit_the_default_hooks_and_real_package_names(rpm_file):
    listing = subprocess.run(["rpm", "-qpl", str(rpm_file)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "/usr/bin/flightctl-agent" in listing
    assert UNIT in listing
    assert "/usr/lib/flightctl/hooks.d/afterupdating/00-default.yaml" in listing
    assert "/usr/lib/flightctl-agent/site/flightctl_agent/cli.py" in listing
    # The two libraries Fedora does not package travel inside.
    assert "/usr/lib/flightctl-agent/site/segno/__init__.py" in listing
    assert "/usr/lib/flightctl-agent/site/grpclib/__init__.py" in listing
    requires = subprocess.run(["rpm", "-qpR", str(rpm_file)], capture_output=True, text=True,
                              check=True).stdout.split("\n")
    for name in ("python3-requests", "python3-cryptography", "python3-click", "python3-pyyaml",
                 "python3-prometheus_client", "python3-h2", "python3-multidict", "systemd"):
        assert name in requires, name
    provides = subprocess.run(["rpm", "-qp", "--provides", str(rpm_file)],
                              capture_output=True, text=True, check=True).stdout
    assert "bundled(python3-segno)" in provides and "bundled(python3-grpclib)" in provides


def _scratch_root(path: Path) -> Path:
    """A root just big enough for the scriptlets: a shell (busybox), /dev/null, and the
    stand-in systemctl; systemd's own units so that systemd-analyze can resolve ours."""
    busybox = require_tool("busybox")
    for directory in ("bin", "usr/bin", "dev", "var/log", "usr/lib/systemd/system"):
        (path / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy(busybox, path / "bin" / "busybox")
    for applet in ("sh", "kill"):
        (path / "bin" / applet).symlink_to("busybox")
    os.mknod(path / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    systemctl = path / "usr" / "bin" / "systemctl"
    systemctl.write_text('#!/bin/sh\necho "$*" >> /var/log/systemctl.calls\n')
    systemctl.chmod(0o755)
    shutil.copytree("/lib/systemd/system", path / "usr/lib/systemd/system", symlinks=True,
                    dirs_exist_ok=True)
    return path


def _rpm(root: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", *args],
                          capture_output=True, text=True, timeout=120)
    noise = [line for line in done.stderr.splitlines() if not line.startswith(
        tuple(f"rpm: {note}" for note in DEBIAN_RPM_NOTE))]
    assert done.returncode == 0 and noise == [], done.stderr
    return done


def test_installed_into_a_scratch_root_it_enables_its_unit_and_removed_it_stops_it(
        rpm_file, tmp_path):
    assert os.geteuid() == 0, "rpm --root runs scriptlets in a chroot: run the tests as root"
    root = _scratch_root(tmp_path / "root")
    calls = root / "var" / "log" / "systemctl.calls"
    _rpm(root, "--initdb")
    _rpm(root, "-i", "--nodeps", str(rpm_file))
    assert calls.read_text().splitlines() == ["daemon-reload", "enable flightctl-agent.service"]

    def mode(name: str) -> int:
        return (root / name.lstrip("/")).stat().st_mode & 0o7777

    assert mode("/usr/bin/flightctl-agent") == 0o755
    assert mode(UNIT) == 0o644
    assert mode("/etc/flightctl") == 0o755
    assert mode("/var/lib/flightctl") == 0o700
    for directory in ("/etc/flightctl/conf.d", "/etc/flightctl/hooks.d",
                      "/usr/lib/flightctl/custom-info.d"):
        assert (root / directory.lstrip("/")).is_dir(), directory
    # The enrollment configuration is the operator's to write (it holds a private key): owned
    # by the package with mode 0600, not shipped.
    assert not (root / "etc/flightctl/config.yaml").exists()
    owned = _rpm(root, "-q", "--qf", "[%{FILENAMES} %{FILEMODES:perms}\n]",
                 "flightctl-agent").stdout
    assert "/etc/flightctl/config.yaml -rw-------" in owned

    analyze = require_tool("systemd-analyze")
    verified = subprocess.run([analyze, "verify", f"--root={root}", "flightctl-agent.service"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr

    calls.write_text("")
    _rpm(root, "-e", "flightctl-agent")
    assert calls.read_text().splitlines() == [
        "--no-reload disable --now flightctl-agent.service", "daemon-reload"]
    assert not (root / "usr/bin/flightctl-agent").exists() and not (root / UNIT[1:]).exists()
