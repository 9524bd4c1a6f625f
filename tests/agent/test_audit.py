"""The agent's audit log of spec-file writes (agent.md §4.2), on real files."""

from __future__ import annotations

import json
import stat

import pytest
from flightctl_agent import protocol
from flightctl_agent.audit import AuditLog
from flightctl_agent.spec import SpecStore


def entries(path) -> list[tuple]:
    return [(e["type"], e["reason"], e["old_version"], e["new_version"], e["result"])
            for e in map(json.loads, path.read_text().splitlines())]


def rendered(version: int, tv: str = "") -> protocol.RenderedSpec:
    annotations = {"fleet-controller/renderedTemplateVersion": tv} if tv else {}
    return protocol.parse_rendered(protocol.spec_document(version, {}, annotations))


def test_every_spec_file_write_is_audited(tmp_path):
    log = tmp_path / "log" / "audit.log"
    store = SpecStore(tmp_path / "data", audit=AuditLog(log, "dev-1"))
    (tmp_path / "data").mkdir()
    assert store.ensure()
    store.set_desired(rendered(1, tv="v2"))
    store.upgrade()
    store.set_desired(rendered(2))
    store.rollback()
    assert entries(log) == [
        ("current", "bootstrap", "", "0", "success"),
        ("desired", "bootstrap", "", "0", "success"),
        ("rollback", "bootstrap", "", "0", "success"),
        ("desired", "sync", "0", "1", "success"),
        ("current", "upgrade", "0", "1", "success"),
        ("rollback", "upgrade", "0", "", "success"),
        ("desired", "sync", "1", "2", "success"),
        ("desired", "rollback", "2", "1", "success"),
    ]
    first_sync = json.loads(log.read_text().splitlines()[3])
    assert first_sync["device"] == "dev-1" and first_sync["fleet_template_version"] == "v2"
    assert first_sync["agent_version"] and first_sync["ts"].endswith("Z")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600

    # Some files lost: all are reset, as a recovery.
    (tmp_path / "data" / "rollback.json").unlink()
    assert store.ensure()
    assert entries(log)[-3:] == [(kind, "recovery", "", "0", "success")
                                 for kind in ("current", "desired", "rollback")]


def test_a_failed_write_is_audited_as_a_failure(tmp_path):
    """A spec path that is a directory fails the write for anyone, root included."""
    data = tmp_path / "data"
    data.mkdir()
    store = SpecStore(data, audit=AuditLog(tmp_path / "audit.log"))
    store.ensure()
    (data / "desired.json").unlink()
    (data / "desired.json").mkdir()
    with pytest.raises(OSError):
        store.set_desired(rendered(1))
    assert entries(tmp_path / "audit.log")[-1] == ("desired", "sync", "", "1", "failure")


def test_the_log_rotates_and_keeps_three(tmp_path):
    log = tmp_path / "audit.log"
    audit = AuditLog(log, "dev", max_bytes=1000)
    for version in range(40):
        audit.record("desired", version, version + 1, "sync")
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    newest = json.loads(log.read_text().splitlines()[-1])
    assert newest["new_version"] == "40"


def test_nothing_is_written_when_disabled(tmp_path):
    store = SpecStore(tmp_path, audit=AuditLog(tmp_path / "log" / "audit.log", enabled=False))
    store.ensure()
    store.set_desired(rendered(1))
    assert not (tmp_path / "log").exists()

