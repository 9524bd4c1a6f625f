"""systemd unit reporting for ``spec.systemd.matchPatterns`` (agent.md §8.3).

Only where systemd runs as the init system; elsewhere (containers, CI machines) units cannot be
queried and the agent reports none.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess


def systemd_units(patterns: list[str]) -> list[dict]:
    if not os.path.isdir("/run/systemd/system"):
        return []
    try:
        r = subprocess.run(["systemctl", "list-units", "--all", "--output=json", "--no-pager"],
                           capture_output=True, text=True, timeout=30)
        units = json.loads(r.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    out = []
    for unit in units:
        name = unit.get("unit", "")
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            out.append({"unit": name, "description": unit.get("description", "")[:2048],
                        "enableState": "", "loadState": unit.get("load", "unknown"),
                        "activeState": unit.get("active", "unknown"),
                        "subState": unit.get("sub", "unknown")})
    return out
