"""The documents a newcomer reads say what the product does: every setting is documented, and
the API's status table uses words that say what they mean."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
BIN = Path(sys.executable).parent


def _table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ") and "---" not in line]


def test_every_setting_check_config_prints_is_in_the_configuration_document(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    printed = subprocess.run([BIN / "flightctl-server", "check-config", "--data-dir", tmp_path],
                             env=env, capture_output=True, text=True, check=True).stdout
    settings = [line.split(":", 1)[0] for line in printed.splitlines()]
    assert len(settings) > 30 and "database_url" in settings
    rows = _table_rows((DOCS / "configuration.md").read_text(), "# Configuration")
    documented = {name for row in rows[1:] for name in re.findall(r"`([a-z_]+)`", row[0])}
    assert [s for s in settings if s not in documented] == []


def test_the_api_status_table_says_implemented_differs_or_not_implemented():
    rows = _table_rows((DOCS / "api.md").read_text(), "## Implemented")
    assert rows[0] == ["area", "status"] and len(rows) > 5
    for area, status in rows[1:]:
        assert re.match(r"(implemented|not implemented|differs: )", status), (area, status)
