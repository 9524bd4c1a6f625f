"""A user's session with the installed ``flightctl`` against a running server: log in, apply the
reference examples from a directory, list them in every output format, edit a fleet in a
scripted ``$EDITOR``, and delete everything."""

from __future__ import annotations

import json
import shutil
import stat
import sys
import textwrap
import time

import yaml

from flightctl.cli.client.kinds import lookup
from tests.cli.conftest import EXAMPLES, headers, table

PLURALS = {"Device": "devices", "Fleet": "fleets", "EnrollmentRequest": "enrollmentrequests",
           "CertificateSigningRequest": "certificatesigningrequests",
           "Repository": "repositories", "ResourceSync": "resourcesyncs"}
FORMATS = ("table", "wide", "yaml", "json", "name")


def examples_dir(server, tmp_path):
    """The reference examples of every kind, in one directory."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    applied: dict[str, list[str]] = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        objects = [o for o in yaml.safe_load_all(path.read_text()) if o]
        shutil.copy(path, directory / path.name)
        for obj in objects:
            applied.setdefault(PLURALS[obj["kind"]], []).append(obj["metadata"]["name"])
    assert set(applied) == {"devices", "fleets", "enrollmentrequests",
                            "certificatesigningrequests", "repositories", "resourcesyncs"}
    return directory, applied


def cli_matches_api(cli, server, cli_args: list, api_path: str, fmt: str) -> None:
    """The CLI's JSON/YAML equals the API's answer (retried while background work settles)."""
    for _ in range(20):
        before = server.api("GET", api_path).json()
        printed = cli.ok(*cli_args, "-o", fmt)
        after = server.api("GET", api_path).json()
        if before == after:
            parsed = json.loads(printed) if fmt == "json" else yaml.safe_load(printed)
            assert parsed == before
            return
        time.sleep(0.5)
    raise AssertionError(f"{api_path} kept changing")


def test_login_apply_list_edit_delete(server, fresh_cli, tmp_path):
    cli = fresh_cli
    # Log in: the token is checked, the session saved privately with the CA inline.
    out = cli.ok("login", server.url, "--token", server.token,
                 "--certificate-authority", server.ca)
    assert "Login successful" in out
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    saved = yaml.safe_load(cli.config_file.read_text())
    assert saved["service"]["server"] == server.url
    assert saved["authentication"]["token"] == server.token
    assert "certificate-authority-data" in saved["service"]

    # Apply a directory of reference examples: one PUT per object, reported per line.
    directory, applied = examples_dir(server, tmp_path)
    out = cli.ok("apply", "-f", directory)
    lines = out.splitlines()
    assert len(lines) == sum(len(names) for names in applied.values())
    for line in lines:
        assert ": applying " in line and line.endswith(("201 Created", "200 OK")), line
    # Applying again replaces: 200 (several -f, stdin too).
    again = cli.ok("apply", "-f", directory / "device.yaml", "-f", "-",
                   input=(directory / "fleet.yaml").read_text())
    assert [line.split(": ", 1)[1] for line in again.splitlines()] == [
        "applying device/f62dfb4f5d2cdbb9339362b5f18f2ce268d75649bdc80003f0e04292a7ef8c3: 200 OK",
        "applying fleet/default: 200 OK"]
    assert again.splitlines()[1].startswith("<stdin>: ")

    for plural, names in applied.items():
        # Every output format, through the short names too.
        # (Subsets: objects of other tests may exist on the shared server.)
        listed = cli.ok("get", plural)
        assert set(names) <= {row["NAME"] for row in table(listed)}
        assert len(headers(cli.ok("get", plural, "-o", "wide"))) >= len(headers(listed))
        # -o name: kind/name lines, kubectl style.
        singular = lookup(plural).singular
        assert {f"{singular}/{n}" for n in names} <= set(cli.ok("get", plural, "-o",
                                                                  "name").split())
        for fmt in ("json", "yaml"):
            cli_matches_api(cli, server, ["get", plural], plural, fmt)
            cli_matches_api(cli, server, ["get", f"{plural}/{names[0]}"],
                            f"{plural}/{names[0]}", fmt)
        # Several names: one list call with a metadata.name field selector.
        if len(names) > 1:
            two = sorted(names)[:2]
            assert sorted(cli.ok("get", plural, *two, "-o", "name").split()) == [
                f"{singular}/{n}" for n in two]

    assert {f"device/{n}" for n in applied["devices"]} <= set(
        cli.ok("get", "dev", "-o", "name").split())
    assert {f"fleet/{n}" for n in applied["fleets"]} <= set(
        cli.ok("get", "flt", "-o", "name").split())
    wide = table(cli.ok("get", "devices", "-o", "wide", "-l", "region=eu-west-1"))
    assert [row["NAME"] for row in wide] == [
        "f62dfb4f5d2cdbb9339362b5f18f2ce268d75649bdc80003f0e04292a7ef8c3"]
    assert "region=eu-west-1" in wide[0]["LABELS"]
    assert "fleet=default" in wide[0]["LABELS"]

    # Edit a fleet in a scripted editor: the change reaches the server.
    editor = tmp_path / "editor.py"
    editor.write_text(textwrap.dedent("""
        import sys, yaml
        path = sys.argv[1]
        obj = yaml.safe_load(open(path))
        obj["metadata"].setdefault("labels", {})["edited"] = "yes"
        obj["spec"]["template"]["spec"]["os"] = {"image": "quay.io/org/os:edited"}
        open(path, "w").write(yaml.safe_dump(obj))
    """))
    out = cli.ok("edit", "fleet/default", env={"EDITOR": f"{sys.executable} {editor}"})
    assert "fleet/default edited" in out
    fleet = server.api("GET", "fleets/default").json()
    assert fleet["metadata"]["labels"]["edited"] == "yes"
    assert fleet["spec"]["template"]["spec"]["os"]["image"] == "quay.io/org/os:edited"

    # A refused edit keeps the user's work in a file and says where.
    bad = tmp_path / "bad_editor.py"
    bad.write_text(textwrap.dedent("""
        import sys, yaml
        path = sys.argv[1]
        obj = yaml.safe_load(open(path))
        obj["spec"]["selector"] = {"matchLabels": {"bad key!": "x"}}
        open(path, "w").write(yaml.safe_dump(obj))
    """))
    result = cli("edit", "flt/default", env={"EDITOR": f"{sys.executable} {bad}"})
    assert result.code != 0 and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    kept = result.err.strip().rsplit("saved in ", 1)[1]
    assert "bad key!" in open(kept).read()
    # An editor that changes nothing cancels the edit.
    out = cli.ok("edit", "fleet/default", env={"EDITOR": "true"})
    assert "no changes" in out

    # Delete everything, by TYPE/NAME and by TYPE N1 N2.
    for plural, names in applied.items():
        first, *rest = names
        cli.ok("delete", f"{plural}/{first}")
        if rest:
            cli.ok("delete", plural, *rest)
        remaining = {row["NAME"] for row in table(cli.ok("get", plural))}
        assert not remaining & set(names)


def test_login_with_insecure_skip_and_then_ca_from_file(server, fresh_cli):
    out = fresh_cli.ok("login", server.url, "-t", server.token, "-k")
    assert "Login successful" in out
    saved = yaml.safe_load(fresh_cli.config_file.read_text())
    assert saved["service"]["insecure-skip-tls-verify"] is True
    assert fresh_cli("get", "devices").code == 0
    # FLIGHTCTL_TOKEN logs in without --token.
    out = fresh_cli.ok("login", server.url, "--certificate-authority", server.ca,
                       env={"FLIGHTCTL_TOKEN": server.token})
    saved = yaml.safe_load(fresh_cli.config_file.read_text())
    assert "insecure-skip-tls-verify" not in saved["service"]
    assert saved["authentication"]["token"] == server.token


def test_contexts_keep_separate_logins(server, fresh_cli):
    fresh_cli.ok("login", server.url, "-t", server.token, "--certificate-authority", server.ca,
                 "--context", "lab")
    assert (fresh_cli.config_file.parent / "client_lab.yaml").exists()
    assert not fresh_cli.config_file.exists()
    assert fresh_cli("get", "devices", "-c", "lab").code == 0
    assert fresh_cli("get", "devices").code != 0
