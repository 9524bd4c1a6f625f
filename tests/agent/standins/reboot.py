"""A simulated reboot for the bootc and systemctl stand-ins: a new boot ID, then the agent stops.

The test harness restarts the agent when it exits, as systemd's ``Restart=always`` does on a
device, so the agent comes back up into a 'rebooted' system (new boot ID, new booted image).
"""

import os
import signal
import uuid
from pathlib import Path


def root() -> Path:
    return Path(os.environ.get("FLIGHTCTL_TEST_ROOT_DIR") or "/")


def reboot() -> None:
    boot_id = root() / "proc/sys/kernel/random/boot_id"
    boot_id.parent.mkdir(parents=True, exist_ok=True)
    boot_id.write_text(str(uuid.uuid4()) + "\n")
    pid = int(os.environ.get("FLIGHTCTL_AGENT_PID") or os.getppid())
    os.kill(pid, signal.SIGTERM)
