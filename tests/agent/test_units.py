"""The agent's pure parts: configuration, wire documents, status rules, hooks, schedules."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flightctl_agent import apps, config, files, hooks, identity, policy, protocol
from flightctl_agent.osimage import parse_bootc_status


def test_the_configuration_has_the_reference_defaults_and_lives_under_the_root(tmp_path):
    cfg = config.load(root=str(tmp_path))
    assert cfg.config_file == tmp_path / "etc/flightctl/config.yaml"
    assert cfg.enrollment.server == "https://localhost:7443"
    assert cfg.enrollment.ca_file == tmp_path / "etc/flightctl/certs/ca.crt"
    assert cfg.enrollment.client_cert == tmp_path / "var/lib/flightctl/certs/client-enrollment.crt"
    assert cfg.management.client_cert == tmp_path / "var/lib/flightctl/certs/agent.crt"
    assert (cfg.status_update_interval, cfg.spec_fetch_interval, cfg.pull_timeout) == (60, 60, 600)
    assert cfg.system_info == config.DEFAULT_SYSTEM_INFO and cfg.log_level == "info"
    assert cfg.tpm.storage_file_path == "/var/lib/flightctl/tpm-blob.yaml"


def test_a_tpm_device_is_used_through_its_resource_manager_and_a_tcti_is_used_as_given(
        tmp_path):
    (tmp_path / "tpm0").touch()
    assert identity.tcti_for(str(tmp_path / "tpm0")) == f"device:{tmp_path}/tpm0"
    (tmp_path / "tpmrm0").touch()
    assert identity.tcti_for(str(tmp_path / "tpm0")) == f"device:{tmp_path}/tpmrm0"
    assert identity.tcti_for("swtpm:host=127.0.0.1,port=2321") == "swtpm:host=127.0.0.1,port=2321"


def test_drop_ins_merge_in_order_and_an_invalid_one_is_skipped_and_reported(tmp_path):
    etc = tmp_path / "etc/flightctl"
    (etc / "conf.d").mkdir(parents=True)
    (etc / "config.yaml").write_text(
        "enrollment-service:\n  service: {server: 'https://api.example:7443'}\n"
        "  authentication: {client-certificate: certs/e.crt}\n"
        "status-update-interval: 0m2s\ndefault-labels: {a: '1'}\nsystem-info: [hostname]\n")
    (etc / "conf.d/10-labels.yaml").write_text("default-labels: {b: '2'}\nlog-level: debug\n")
    (etc / "conf.d/20-broken.yaml").write_text("log-level: [unclosed\n")
    (etc / "conf.d/30-bad-value.yaml").write_text("log-level: loud\n")
    (etc / "conf.d/40-ignored-key.yml").write_text("status-update-interval: 5m\n")
    cfg = config.load(root=str(tmp_path))
    assert cfg.default_labels == {"a": "1", "b": "2"}
    assert cfg.log_level == "debug"
    assert cfg.status_update_interval == 2  # not a drop-in key
    assert cfg.enrollment.client_cert == etc / "certs/e.crt"  # relative to the config file
    assert cfg.management.server == "https://api.example:7443"
    assert [w.split(":")[0] for w in cfg.warnings] == [
        "skipped config drop-in 20-broken.yaml", "skipped config drop-in 30-bad-value.yaml"]


@pytest.mark.parametrize("text,seconds", [("0m2s", 2), ("1h30m", 5400), ("250ms", 0.25)])
def test_durations_are_go_durations(text, seconds):
    assert config.parse_duration(text) == seconds


def test_an_invalid_interval_is_refused_with_its_key(tmp_path):
    (tmp_path / "c.yaml").write_text("status-update-interval: 1s\n")
    with pytest.raises(config.ConfigError, match="status-update-interval"):
        config.load(tmp_path / "c.yaml", root=str(tmp_path))


def test_the_device_name_is_base32hex_of_the_public_point():
    key = ec.generate_private_key(ec.SECP256R1())
    numbers = key.public_key().public_numbers()
    raw = numbers.x.to_bytes((numbers.x.bit_length() + 7) // 8, "big") + \
        numbers.y.to_bytes((numbers.y.bit_length() + 7) // 8, "big")
    expected = base64.b32hexencode(hashlib.sha256(raw).digest()).decode().rstrip("=").lower()
    name = protocol.device_name(key.public_key())
    assert name == expected and len(name) == 52
    assert protocol.csr_common_name(protocol.build_csr(key, name)) == name


def test_enrollment_labels_sanitize_system_info_and_default_labels_win():
    labels, problems = protocol.enrollment_labels(
        {"env": "production", "bad": "no spaces allowed"},
        {"distro": "distroName", "env": "hostname", "site": "customInfo.site"},
        {"distroName": "CentOS Stream", "hostname": "edge 1", "customInfo": {"site": "9.5 (Plow)"}})
    assert labels == {"distro": "CentOS-Stream", "env": "production", "site": "9.5--Plow",
                      "alias": "edge-1"}
    assert problems == ["default label bad='no spaces allowed' is invalid"]


def test_the_enrollment_request_and_status_documents():
    body = protocol.enrollment_request_body("dev", "CSR", {"systemInfo": {}}, {"a": "b"},
                                            "image", "0")
    assert body == {"apiVersion": "v1beta1", "kind": "EnrollmentRequest",
                    "metadata": {"name": "dev"},
                    "spec": {"csr": "CSR", "deviceStatus": {"systemInfo": {}},
                             "labels": {"a": "b"}, "osMode": "image"}}
    assert "knownRenderedVersion" in protocol.enrollment_request_body(
        "d", "c", {}, {}, None, "7")["spec"]
    doc = protocol.status_document("dev", protocol.empty_status())
    assert doc["kind"] == "Device" and doc["status"]["config"] == {"renderedVersion": "0"}


def test_the_structured_error_message_names_phase_component_and_a_shortened_element():
    now = datetime(2025, 1, 2, 3, 4, 5)
    message = protocol.structured_error_message("Preparing", "prefetch", "x" * 300,
                                                "required resource not found", now)
    assert message == ("[2025-01-02 03:04:05] While Preparing: prefetch failed for ..."
                       + "x" * 64 + ": required resource not found")
    assert len(protocol.structured_error_message("A", "b", None, "y" * 400, now)) == 250


def test_rendered_specs_parse_version_and_hash():
    doc = protocol.spec_document(7, {"config": []})
    rendered = protocol.parse_rendered(doc)
    assert rendered.version == 7 and rendered.spec_hash == protocol.spec_hash({"config": []})


def state(**kw):
    base = {"Id": kw.pop("id", "c"), "State": "running", "Status": "Up", "ExitCode": 0}
    return {**base, **kw}


@pytest.mark.parametrize("containers,desired,expected", [
    ([], None, ("Unknown", "Unknown")),
    ([state(), state(State="created")], None, ("Starting", "Degraded")),
    ([state(State="created")], None, ("Preparing", "Unknown")),
    ([state(State="exited")], None, ("Completed", "Healthy")),
    ([state(), state(State="exited")], None, ("Running", "Healthy")),
    ([state(Status="Up (unhealthy)")], None, ("Running", "Degraded")),
    ([state(), state(State="exited", ExitCode=1)], None, ("Running", "Degraded")),
    ([state(State="exited", ExitCode=1)], None, ("Error", "Error")),
    ([], "stopped", ("Stopped", "Healthy")),
    ([state()], "stopped", ("Stopping", "Degraded")),
])
def test_application_status_follows_the_decision_table(containers, desired, expected):
    app = {"name": "a", "appType": "container", "desiredState": desired}
    result = apps.app_status(app, containers, {})
    assert (result["status"], result["_health"]) == expected


def test_the_applications_summary():
    assert apps.summarize([])["status"] == "NoApplications"
    ok = {"name": "a", "status": "Running", "_health": "Healthy"}
    bad = {"name": "b", "status": "Error", "_health": "Error"}
    assert apps.summarize([dict(ok)])["info"] == "Device's application workloads are healthy."
    assert apps.summarize([dict(ok), dict(bad)]) == {"status": "Error",
                                                     "info": "b is in status Error"}


def test_forbidden_device_paths_are_refused():
    for path, text in [("/etc/flightctl/config.yaml", "writing agent config file"),
                       ("/var/lib/flightctl/x", 'writing under "/var/lib/flightctl"'),
                       ("relative", "must be absolute")]:
        with pytest.raises(Exception, match=text):
            files.check_path(path)


def test_hook_conditions_and_variables(tmp_path):
    paths = config.Paths(tmp_path)
    out = tmp_path / "out"
    hook_dir = tmp_path / "etc/flightctl/hooks.d/afterupdating"
    hook_dir.mkdir(parents=True)
    (hook_dir / "a.yaml").write_text(
        "- if: [{path: /etc/x/, op: [created]}]\n"
        f"  run: /bin/sh -c 'echo ${{ CreatedFiles }} > {out}'\n"
        "- if: ['rebooted == true']\n  run: /bin/false\n")
    hooks.run_hooks(paths, hooks.AFTER_UPDATING, files.FileDiff(created=["/etc/x/1", "/etc/y"]))
    assert out.read_text().strip() == "/etc/x/1"
    with pytest.raises(Exception, match="hook exited with 1"):
        hooks.run_hooks(paths, hooks.AFTER_UPDATING, rebooted=True)


def test_update_schedules_open_within_the_grace_period():
    at = {"at": "30 4 * * *", "startGraceDuration": "10m", "timeZone": "UTC"}
    assert policy.ready(at, datetime(2025, 1, 1, 4, 35))
    assert not policy.ready(at, datetime(2025, 1, 1, 4, 45))
    assert policy.ready({"at": "* * * * *", "startGraceDuration": "0s"}, datetime(2025, 1, 1))


def test_bootc_status_json_is_parsed():
    status = parse_bootc_status({"status": {
        "booted": {"image": {"image": {"image": "quay.io/os:1"}, "imageDigest": "sha256:a"}},
        "staged": None, "rollback": {"image": {"image": {"image": "quay.io/os:0"}}}}})
    assert (status.booted.image, status.booted.digest) == ("quay.io/os:1", "sha256:a")
    assert status.staged is None and status.rollback.image == "quay.io/os:0"
