"""The agent's RPM, built from its wheel the way ``make rpm`` builds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.agent.harness import require_tool

ROOT = Path(__file__).resolve().parents[2]


def test_the_rpm_builds_and_lists_the_binary_the_unit_and_the_default_hooks(tmp_path):
    require_tool("rpmbuild")
    built = subprocess.run(["bash", str(ROOT / "agent/packaging/build-rpm.sh"), str(tmp_path)],
                           env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                "PYTHON": sys.executable, "HOME": str(tmp_path)},
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    rpm = Path(built.stdout.strip().splitlines()[-1])
    listing = subprocess.run(["rpm", "-qpl", str(rpm)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "/usr/bin/flightctl-agent" in listing
    assert "/usr/lib/systemd/system/flightctl-agent.service" in listing
    assert "/usr/lib/flightctl/hooks.d/afterupdating/00-default.yaml" in listing
    assert "/usr/lib/flightctl-agent/site/flightctl_agent/cli.py" in listing
    requires = subprocess.run(["rpm", "-qpR", str(rpm)], capture_output=True, text=True,
                              check=True).stdout
    assert "python3-cryptography" in requires and "podman" in requires
