"""Bad input gives one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import yaml

from tests.cli.conftest import free_port


def one_line_error(result, *fragments) -> str:
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_unknown_kind(cli):
    one_line_error(cli("get", "widgets"), 'unknown resource type "widgets"', "devices")
    one_line_error(cli("delete", "widget/x"), 'unknown resource type "widget"')


def test_unreadable_and_malformed_files(cli, tmp_path):
    one_line_error(cli("apply", "-f", tmp_path / "missing.yaml"), "no such file")
    binary = tmp_path / "blob.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    one_line_error(cli("apply", "-f", binary), "not a text file")
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1beta1\nkind: Device\nmetadata: {name: [unclosed\n")
    one_line_error(cli("apply", "-f", broken), "broken.yaml: invalid YAML", "line")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    one_line_error(cli("apply", "-f", scalar), "must be an object")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    one_line_error(cli("apply", "-f", empty_dir), "no .yaml")


def test_a_rejected_object_names_the_file_and_the_server_message(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([
        {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
         "metadata": {"name": "Not_A_Valid_Name"}},
        {"apiVersion": "flightctl.io/v1beta1", "kind": "Gadget", "metadata": {"name": "g"}},
    ]))
    result = cli("apply", "-f", bad)
    assert result.code != 0 and "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 3  # one per failed object, then the count
    assert "bad.yaml: applying device/Not_A_Valid_Name:" in lines[0] and "400" in lines[0]
    assert 'cannot apply kind "Gadget"' in lines[1]
    assert "2 of 2 resources failed" in lines[2]


def test_a_missing_resource_reports_the_servers_message(cli):
    one_line_error(cli("get", "device/does-not-exist"),
                   'Device of name "does-not-exist" not found', "404")
    one_line_error(cli("get", "events", "some-event"), "cannot be fetched by name")
    one_line_error(cli("get", "devices", "--field-selector", "no.such.field=1"), "400")


def test_server_down(fresh_cli, server):
    fresh_cli.ok("login", server.url, "-t", server.token, "--certificate-authority", server.ca)
    config = yaml.safe_load(fresh_cli.config_file.read_text())
    config["service"]["server"] = f"https://127.0.0.1:{free_port()}"
    fresh_cli.config_file.write_text(yaml.safe_dump(config))
    down = fresh_cli("get", "devices")
    one_line_error(down, "cannot reach the server", "connection refused")
    # Its own exit code: a script can tell "the server is away" from "the server said no".
    assert down.code == 4
    login = fresh_cli("login", f"https://127.0.0.1:{free_port()}", "-t", "x", "-k")
    one_line_error(login, "cannot reach the server")
    assert login.code == 4


def test_expired_or_unknown_token(fresh_cli, server):
    # The server's answer to an expired token and to an unknown one is the same 401.
    result = fresh_cli("login", server.url, "-t", "fctl_expired-or-revoked",
                       "--certificate-authority", server.ca)
    one_line_error(result, "401", "log in again")
    assert not fresh_cli.config_file.exists()
    fresh_cli.ok("login", server.url, "-t", server.token, "--certificate-authority", server.ca)
    one_line_error(fresh_cli("get", "devices", env={"FLIGHTCTL_TOKEN": "fctl_stale"}), "401",
                   "flightctl login")


def test_not_logged_in_and_untrusted_server(fresh_cli, server):
    one_line_error(fresh_cli("get", "devices"), "not logged in", "flightctl login")
    # No CA given and the server's CA is private: verification fails with advice.
    one_line_error(fresh_cli("login", server.url, "-t", server.token),
                   "TLS verification", "--certificate-authority")


def test_username_and_password_go_to_the_password_issuer(fresh_cli, server):
    result = fresh_cli("login", server.url, "-u", "nobody", "-p", "secret",
                       "--certificate-authority", server.ca)
    one_line_error(result, "invalid username or password")
    one_line_error(fresh_cli("login", server.url, "--certificate-authority", server.ca),
                   "--token")
    out = fresh_cli.ok("login", server.url, "--show-providers", "--certificate-authority",
                       server.ca)
    assert "local" in out and "Local users (password)" in out


def test_usage_errors(cli):
    one_line_error(cli("get", "devices", "x", "-l", "a=b"), "cannot be combined")
    one_line_error(cli("get", "fleets", "--rendered"), "exactly one device")
    one_line_error(cli("approve", "device/x"), "cannot approve devices")
    one_line_error(cli("approve", "csr/x", "-l", "a=b"), "enrollment requests only")
    one_line_error(cli("approve", "er/x", "-l", "novalue"), "KEY=VALUE")
    one_line_error(cli("config", "set-organization", "not-a-uuid"), "UUID")
    result = cli("get")
    assert result.code == 2 and "Traceback" not in result.err
