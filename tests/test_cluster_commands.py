"""``flightctl-server cluster-bundle`` / ``join`` and the multi-host database URL
(docs/deploy-multihost.md); the whole topology runs in tests/test_multihost.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from flightctl.config import ConfigError, load
from flightctl.settings import database_from_url

BIN = Path(sys.executable).parent
URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def server(*argv, data_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
    return subprocess.run([BIN / "flightctl-server", *map(str, argv), "--data-dir",
                           str(data_dir)], env=env, capture_output=True, text=True)


def test_a_bundle_joins_a_second_node_to_the_same_keys_and_database(tmp_path):
    first, second, bundle = tmp_path / "a", tmp_path / "b", tmp_path / "bundle.tgz"
    made = server("cluster-bundle", "-o", bundle, data_dir=first)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
    assert {"manifest.json", "pki/ca.crt", "pki/ca.key", "pki/client-signer.crt",
            "pki/client-signer.key", "secret_key", "encryption.key"} == names

    joined = server("join", bundle, "--database-url", URL, "--base-url", "https://lb:3443",
                    "--agent-endpoint", "https://lb:7443", "--alt-name", "lb",
                    "--console-bridge-address", "10.0.0.2:0", data_dir=second)
    assert joined.returncode == 0, joined.stderr
    assert "(primary) reachable" in joined.stderr
    for name in ("pki/ca.crt", "pki/ca.key", "pki/client-signer.key", "secret_key",
                 "encryption.key"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    for name in ("pki/ca.key", "secret_key", "encryption.key", "config.yaml"):
        assert stat.S_IMODE((second / name).stat().st_mode) == 0o600, name
    settings = yaml.safe_load((second / "config.yaml").read_text())
    assert settings == {"database_url": URL, "base_url": "https://lb:3443",
                        "agent_endpoint": "https://lb:7443", "alt_names": ["lb"],
                        "console_bridge_address": "10.0.0.2:0"}
    assert load(second).database_url == URL


def test_join_refuses_another_installation_and_what_is_not_a_bundle(tmp_path):
    bundle, other = tmp_path / "bundle.tgz", tmp_path / "other"
    assert server("cluster-bundle", "-o", bundle, data_dir=tmp_path / "a").returncode == 0
    assert server("cluster-bundle", "-o", tmp_path / "x.tgz", data_dir=other).returncode == 0
    refused = server("join", bundle, "--database-url", URL, "--no-check", data_dir=other)
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: ") and "another installation's CA" in refused.stderr
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not an archive")
    refused = server("join", junk, "--database-url", URL, data_dir=tmp_path / "c")
    assert refused.returncode == 1 and "not a readable cluster bundle" in refused.stderr
    unreachable = server("join", bundle, "--database-url",
                         "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2",
                         data_dir=tmp_path / "d")
    assert unreachable.returncode == 1 and "cannot reach the database" in unreachable.stderr
    assert not (tmp_path / "d" / "pki").exists()


def test_a_multi_host_url_gives_libpq_its_host_and_port_lists():
    entry = database_from_url("postgresql://fc:pw@db1:5432,db2:5433,[::1]:5434/flightctl"
                              "?target_session_attrs=read-write&connect_timeout=3")
    assert (entry["HOST"], entry["PORT"]) == ("db1,db2,::1", "5432,5433,5434")
    assert entry["OPTIONS"] == {"target_session_attrs": "read-write", "connect_timeout": "3"}
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"]) == ("flightctl", "fc", "pw")
    single = database_from_url("postgres://u@h/db")
    assert (single["HOST"], single["PORT"]) == ("h", "")
    socket = database_from_url("postgres://u@/db?host=/run/pg")
    assert socket["HOST"] == "/run/pg"


def test_the_status_commit_setting_is_one_of_postgresqls_levels(tmp_path):
    assert load(tmp_path, environ={}).status_synchronous_commit == "off"
    assert load(tmp_path, environ={"FLIGHTCTL_STATUS_SYNCHRONOUS_COMMIT": "remote_write"}
                ).status_synchronous_commit == "remote_write"
    try:
        load(tmp_path, environ={"FLIGHTCTL_STATUS_SYNCHRONOUS_COMMIT": "off; DROP TABLE x"})
    except ConfigError as exc:
        assert "status_synchronous_commit: must be one of off, local" in str(exc)
    else:
        raise AssertionError("an invalid level was accepted")
