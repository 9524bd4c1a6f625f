"""Tables match the reference's columns; selectors, names and paging reach the API."""

from __future__ import annotations

import json
import time

import yaml

from tests.cli.conftest import EXAMPLES, headers, table


def put(server, plural: str, obj: dict) -> dict:
    response = server.api("PUT", f"{plural}/{obj['metadata']['name']}", json=obj)
    assert response.status_code in (200, 201), response.text
    return response.json()


def device(name: str, **labels) -> dict:
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "labels": labels}}


def test_device_table_columns_and_values(server, cli):
    put(server, "devices", device("out-dev-1", alias="kiosk", site="out"))
    put(server, "devices", device("out-dev-2", site="out"))
    text = cli.ok("get", "devices", "-l", "site=out")
    assert headers(text) == ["NAME", "ALIAS", "OWNER", "SYSTEM", "UPDATED", "APPLICATIONS"]
    rows = {row["NAME"]: row for row in table(text)}
    api = {o["metadata"]["name"]: o for o in
           server.api("GET", "devices", params={"labelSelector": "site=out"}).json()["items"]}
    assert set(rows) == set(api) == {"out-dev-1", "out-dev-2"}
    for name, row in rows.items():
        status = api[name]["status"]
        assert row["SYSTEM"] == status["summary"]["status"]
        assert row["UPDATED"] == status["updated"]["status"]
        assert row["APPLICATIONS"] == status["applicationsSummary"]["status"]
        assert row["OWNER"] == (api[name]["metadata"].get("owner") or "<none>")
    assert rows["out-dev-1"]["ALIAS"] == "kiosk" and rows["out-dev-2"]["ALIAS"] == "<none>"

    wide = cli.ok("get", "devices", "-l", "site=out", "-o", "wide")
    assert headers(wide)[-1] == "LABELS"
    assert table(wide)[0]["LABELS"] == "alias=kiosk,site=out"

    # Field selectors and single names.
    named = table(cli.ok("get", "devices", "--field-selector", "metadata.name=out-dev-2"))
    assert [row["NAME"] for row in named] == ["out-dev-2"]
    assert cli.ok("get", "device/out-dev-1", "-o", "name").strip() == "device/out-dev-1"

    # Summaries: the list plus counts, or only the counts.
    summary = cli.ok("get", "devices", "-l", "site=out", "--summary")
    assert "STATUS TYPE" in summary and "Devices: 2" in summary
    only = cli.ok("get", "devices", "-l", "site=out", "--summary-only")
    assert only.startswith("Devices: 2") and "NAME" not in only
    raw = json.loads(cli.ok("get", "devices", "-l", "site=out", "--summary-only", "-o", "json"))
    assert raw["summary"]["total"] == 2 and raw["items"] == []

    # Last seen: never, for a device without an agent.
    seen = cli.ok("get", "device/out-dev-1", "--last-seen")
    assert headers(seen) == ["LAST SEEN", "TIME AGO"] and "<never>" in seen

    cli.ok("delete", "devices", "out-dev-1", "out-dev-2")


def test_limit_and_continue_page_through_a_list(server, cli):
    for i in range(5):
        put(server, "devices", device(f"page-{i}", paged="yes"))
    first = json.loads(cli.ok("get", "devices", "-l", "paged=yes", "--limit", "2", "-o",
                              "json"))
    assert [o["metadata"]["name"] for o in first["items"]] == ["page-0", "page-1"]
    token = first["metadata"]["continue"]
    second = yaml.safe_load(cli.ok("get", "devices", "-l", "paged=yes", "--limit", "2",
                                   "--continue", token, "-o", "yaml"))
    assert [o["metadata"]["name"] for o in second["items"]] == ["page-2", "page-3"]
    # A limited table says how to continue; without a limit every page is listed.
    limited = cli("get", "devices", "-l", "paged=yes", "--limit", "2")
    assert len(table(limited.out)) == 2 and "--continue" in limited.err
    assert len(table(cli.ok("get", "devices", "-l", "paged=yes"))) == 5
    cli.ok("delete", "devices", *[f"page-{i}" for i in range(5)])


def test_fleet_table_columns(server, cli):
    fleet = yaml.safe_load((EXAMPLES / "fleet-b.yaml").read_text())
    fleet["metadata"]["name"] = "out-fleet"
    put(server, "fleets", fleet)

    def valid() -> str:
        api = server.api("GET", "fleets/out-fleet").json()
        return next((c["status"] for c in api["status"]["conditions"] if c["type"] == "Valid"),
                    "Unknown")

    for _ in range(40):  # the Valid condition is set by a background task
        before, text = valid(), cli.ok("get", "fleets", "out-fleet")
        if before == valid():
            break
        time.sleep(0.25)
    assert headers(text) == ["NAME", "OWNER", "SELECTOR", "VALID"]
    assert table(text) == [{"NAME": "out-fleet", "OWNER": "<none>",
                            "SELECTOR": "fleet=fleet-b", "VALID": before}]
    with_devices = cli.ok("get", "fleet/out-fleet", "--summary")
    assert headers(with_devices) == ["NAME", "OWNER", "SELECTOR", "VALID", "DEVICES"]
    cli.ok("delete", "fleet/out-fleet")


def test_event_table_columns(server, cli):
    put(server, "devices", device("event-dev"))
    text = cli.ok("get", "events", "--field-selector", "involvedObject.name=event-dev")
    assert headers(text) == ["AGE", "INVOLVEDOBJECT.KIND", "INVOLVEDOBJECT.NAME", "TYPE",
                             "MESSAGE"]
    rows = table(text)
    assert rows and all(r["INVOLVEDOBJECT.NAME"] == "event-dev" for r in rows)
    assert {r["INVOLVEDOBJECT.KIND"] for r in rows} == {"Device"}
    api = server.api("GET", "events",
                     params={"fieldSelector": "involvedObject.name=event-dev"}).json()
    assert [r["MESSAGE"] for r in rows] == [e["message"] for e in api["items"]]
    assert json.loads(cli.ok("get", "ev", "--field-selector",
                             "involvedObject.name=event-dev", "-o", "json")) == api
    cli.ok("delete", "device/event-dev")


def test_organization_table(server, cli):
    text = cli.ok("get", "organizations")
    assert headers(text) == ["NAME", "DISPLAY NAME", "EXTERNAL ID"]


def test_enrollment_request_table_columns(server, cli):
    cli.ok("apply", "-f", EXAMPLES / "enrollmentrequest.yaml")
    name = yaml.safe_load((EXAMPLES / "enrollmentrequest.yaml").read_text())["metadata"]["name"]
    text = cli.ok("get", "er", name)
    assert headers(text) == ["NAME", "APPROVAL", "APPROVER", "APPROVED LABELS"]
    assert table(text) == [{"NAME": name, "APPROVAL": "Pending", "APPROVER": "<none>",
                            "APPROVED LABELS": "<none>"}]
    cli.ok("delete", f"er/{name}")


def test_repository_table_columns(server, cli):
    cli.ok("apply", "-f", EXAMPLES / "repository-flightctl.yaml", "-f",
           EXAMPLES / "repository-oci.yaml")
    text = cli.ok("get", "repositories")
    assert headers(text) == ["NAME", "TYPE", "REPOSITORY URL", "ACCESSIBLE"]
    rows = {row["NAME"]: row for row in table(text)}
    for path in ("repository-flightctl.yaml", "repository-oci.yaml"):
        for obj in yaml.safe_load_all((EXAMPLES / path).read_text()):
            if not obj:
                continue
            row = rows[obj["metadata"]["name"]]
            assert row["TYPE"] == obj["spec"]["type"]
            assert row["REPOSITORY URL"] == (obj["spec"].get("url") or obj["spec"]["registry"])
            cli.ok("delete", f"repo/{obj['metadata']['name']}")


def test_resource_sync_table_columns(server, cli):
    cli.ok("apply", "-f", EXAMPLES / "resourcesync.yaml")
    obj = yaml.safe_load((EXAMPLES / "resourcesync.yaml").read_text())
    text = cli.ok("get", "rs", obj["metadata"]["name"])
    assert headers(text) == ["NAME", "REPOSITORY", "PATH", "REVISION", "ACCESSIBLE", "SYNCED",
                             "LAST SYNC"]
    row = table(text)[0]
    assert (row["REPOSITORY"], row["PATH"], row["REVISION"]) == (
        obj["spec"]["repository"], obj["spec"]["path"], obj["spec"]["targetRevision"])
    cli.ok("delete", f"rs/{obj['metadata']['name']}")


def test_csr_table_columns(server, cli):
    cli.ok("apply", "-f", EXAMPLES / "csr.yaml")
    text = cli.ok("get", "csr", "mycsr")
    assert headers(text) == ["NAME", "AGE", "SIGNERNAME", "REQUESTOR", "REQUESTEDDURATION",
                             "CONDITION"]
    row = table(text)[0]
    assert row["SIGNERNAME"] == "flightctl.io/enrollment" and row["REQUESTEDDURATION"] == "7d"
    cli.ok("delete", "csr/mycsr")


def test_template_versions_of_a_fleet(server, cli):
    fleet = yaml.safe_load((EXAMPLES / "fleet-b.yaml").read_text())
    fleet["metadata"]["name"] = "tv-fleet"
    # Inline configuration only: the example's git and secret sources name objects this server
    # has not got, and a fleet that references them gets no TemplateVersion.
    spec = fleet["spec"]["template"]["spec"]
    spec["config"] = [c for c in spec["config"] if "inline" in c]
    put(server, "fleets", fleet)
    assert cli("get", "tv").code != 0  # --fleetname is required
    deadline = time.monotonic() + 60
    while True:  # the first TemplateVersion is created by a background task
        api = server.api("GET", "fleets/tv-fleet/templateversions").json()
        if api["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert api["items"], "no TemplateVersion within 60 s"
    text = cli.ok("get", "templateversions", "--fleetname", "tv-fleet")
    assert headers(text) == ["FLEET", "NAME"]
    assert [r["NAME"] for r in table(text)] == [o["metadata"]["name"] for o in api["items"]]
    assert all(r["FLEET"] == "tv-fleet" for r in table(text))
    cli.ok("delete", "fleet/tv-fleet")
