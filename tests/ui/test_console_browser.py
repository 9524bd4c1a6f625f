"""The console in real Chromium against a real server with simulated devices: an operator logs
in, reads the overview, filters devices, approves an enrollment, edits a fleet and follows its
rollout batch by batch, reads why a device failed; a viewer can change nothing.

The tests of this module share one server, one set of devices and one browser, and run in the
order written (each picks up where the previous one left the fleet).
"""

from __future__ import annotations

import pytest

from tests.ui.harness import Server, stop_process, wait

SIMULATED = 6
ADMIN, VIEWER = ("ops", "ops-password-1"), ("watcher", "watcher-password-1")
TEMPLATE = {"metadata": {"labels": {"fleet": "sim"}}, "spec": {"config": [{
    "name": "motd", "inline": [{"path": "/etc/motd", "content": "version 1\n"}]}]}}


def _fleet(name: str, selector: dict, template: dict, policy: dict | None = None) -> dict:
    spec = {"selector": {"matchLabels": selector}, "template": template}
    if policy:
        spec["rolloutPolicy"] = policy
    return {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("console"))
    simulators = []
    try:
        server.create_user(*ADMIN, "org-admin")  # approves enrollments too
        server.create_user(*VIEWER, "viewer")
        # Two batches of two devices, then the rest; every batch must be fully successful.
        server.put("/api/v1/fleets/sim", _fleet("sim", {"fleet": "sim"}, TEMPLATE, {
            "deviceSelection": {"strategy": "BatchSequence",
                                "sequence": [{"limit": 2}, {"limit": 2}]},
            "successThreshold": "100%"}))
        # A template that needs a label ("site") the device approved below will not have.
        server.put("/api/v1/fleets/edge", _fleet("edge", {"fleet": "edge"}, {
            "metadata": {"labels": {"fleet": "edge"}}, "spec": {"config": [{
                "name": "site", "inline": [{"path": "/etc/site",
                                            "content": "{{ .metadata.labels.site }}"}]}]}}))
        # One of them with a critical disk and a failed application: an alert to show.
        simulators.append(server.simulate("fleet", SIMULATED, "fleet=sim", failing_share=0.17))
        wait("the simulated devices up to date", lambda: server.get(
            "/api/v1/devices", summaryOnly="true", labelSelector="fleet=sim")["summary"][
            "updateStatus"].get("UpToDate") == SIMULATED, 180, 2)
        server.simulators = simulators
        yield server
    finally:
        for process in simulators:
            stop_process(process)
        server.stop()


def _shown_counts(browser, chart: str) -> dict[str, int]:
    return {link.get_attribute("data-status"): int(link.text)
            for link in browser.css(f'[data-chart="{chart}"] a.count')}


def test_an_operator_logs_in_and_the_overview_counts_match_the_api(browser, server):
    browser.login(*ADMIN)
    assert browser.css(".role-badge")[0].text == "org-admin"
    nav = browser.text("#nav-sidebar")
    for task in ("Overview", "Devices", "Fleets", "Enrollment", "Repositories",
                 "Resource syncs", "Events"):
        assert task in nav

    def matches():
        summary = server.get("/api/v1/devices", summaryOnly="true")["summary"]
        browser.open("/admin/")
        shown = {"summaryStatus": _shown_counts(browser, "device-status"),
                 "updateStatus": _shown_counts(browser, "update-status"),
                 "applicationStatus": _shown_counts(browser, "application-status")}
        total = int(browser.text("#device-total .big"))
        wanted = {key: summary[key] for key in shown}
        return (total, shown) == (summary["total"], wanted) or (total, shown, summary)
    wait("the overview to show the API's summary", lambda: matches() is True, 45, 2)
    assert int(browser.text("#device-total .big")) == SIMULATED
    assert _shown_counts(browser, "device-status") == {"Online": SIMULATED - 1, "Error": 1}
    assert browser.text('[data-alert="resources-critical"] .big') == "1"
    assert len(browser.css("#alerting tr")) == 1
    browser.screenshot("overview")


def test_devices_are_filtered_by_a_label_selector_with_the_apis_errors(browser, server):
    browser.open("/admin/devices/device/")
    browser.fill("input[name=labelSelector]", "fleet=sim")
    browser.click("#selectors button")
    wait("the filtered list", lambda: "labelSelector=fleet%3Dsim" in browser.driver.current_url)
    rows = browser.css("tr.device-row")
    api = server.get("/api/v1/devices", labelSelector="fleet=sim")["items"]
    assert sorted(r.get_attribute("data-name") for r in rows) == sorted(
        d["metadata"]["name"] for d in api)
    assert len(rows) == SIMULATED
    browser.screenshot("devices")
    browser.fill("input[name=labelSelector]", "fleet in (sim")
    browser.click("#selectors button")
    error = browser.text(".selector-error")
    assert "invalid" in error.lower() and "fleet in (sim" in error
    assert not browser.css("tr.device-row")


def test_an_approved_enrollment_request_becomes_a_device_that_says_why_it_failed(
        browser, server):
    simulator = server.simulate("waiting", 1, approve=False)
    server.simulators.append(simulator)
    pending = wait("a pending enrollment request", lambda: [
        er for er in server.get("/api/v1/enrollmentrequests")["items"]
        if not (er.get("status") or {}).get("approval")], 90, 1)
    name = pending[0]["metadata"]["name"]
    browser.open("/admin/enrollment/enrollmentrequest/")
    row = browser.one(f'tr.er-row[data-name="{name}"]')
    assert "Pending" in row.text and "linux" in row.text
    browser.screenshot("enrollment")
    browser.click(f'tr.er-row[data-name="{name}"] input[name=names]')
    browser.fill("#approve-labels", "fleet=edge, tier=door")
    browser.fill("#approve-alias", "door-sensor")
    browser.click("#approve-selected")
    wait("the device page", lambda: f"/admin/devices/device/{name}/" in browser.driver.current_url)
    device = server.get(f"/api/v1/devices/{name}")
    assert device["metadata"]["labels"]["fleet"] == "edge"
    assert device["metadata"]["labels"]["alias"] == "door-sensor"
    browser.open("/admin/devices/device/?labelSelector=tier%3Ddoor")
    assert [r.get_attribute("data-name") for r in browser.css("tr.device-row")] == [name]
    # The edge fleet adopts it, but its template needs a label the device lacks: the page
    # says so, in words.
    page = f"/admin/devices/device/{name}/"
    browser.open(page)
    why = browser.until_text("could not be applied to this device", selector="#why", timeout=90)
    assert "site" in why, why
    assert "Why is this device not at its target?" in why
    browser.screenshot("device-failed")


def test_a_template_edit_rolls_out_batch_by_batch_with_pause_and_resume(browser, server):
    page = "/admin/fleets/fleet/sim/"
    browser.open(page)
    browser.click("#approval-manual")  # every batch waits for the operator
    browser.one("#approval-automatic")
    browser.click("#edit-fleet")
    # A mistake first: the API's validation error is shown in place, the text kept.
    document = browser.one("#document").get_attribute("value")
    browser.set_value("#document", document.replace("matchLabels:", "matchLabelz:", 1))
    browser.click("#save")
    error = browser.text("#api-error")
    assert "matchLabelz" in error or "selector" in error, error
    assert "matchLabelz" in browser.one("#document").get_attribute("value")
    browser.screenshot("fleet-edit-error")
    browser.set_value("#document", document.replace("version 1", "version 2"))
    browser.click("#save")
    wait("the fleet page", lambda: browser.driver.current_url.endswith(page))
    browser.until_text("Waiting for batch 1 to be approved", selector="#rollout")
    assert "v2" in browser.text("#rollout")
    browser.click("#rollout-approve")
    done = browser.until_text("100%: 2/2 successful", selector='tr[data-batch="1"]', timeout=90)
    assert "done" in done
    browser.until_text("Waiting for batch 2 to be approved", selector="#rollout")
    assert "current" in browser.text('tr[data-batch="2"]')
    browser.screenshot("fleet-rollout")
    browser.click("#rollout-pause")
    paused = browser.until_text("paused", selector="#rollout-status")
    assert "Rollout is paused" in paused
    browser.click("#rollout-resume")
    browser.until_text("Waiting for batch 2 to be approved", selector="#rollout")
    browser.click("#rollout-approve")
    browser.until_text("100%: 2/2 successful", selector='tr[data-batch="2"]', timeout=90)
    browser.until_text("Waiting for final implicit batch to be approved", selector="#rollout")
    browser.click("#rollout-approve")
    browser.until_text("Rollout is not in progress", selector="#rollout", timeout=90)
    assert "2/2 successful" in browser.text('tr[data-batch="3"]')
    assert int(browser.text("#fleet-uptodate")) == SIMULATED
    # The diff between the two template versions shows the edit.
    diff = browser.text("#diff")
    assert "-" in diff and "version 2" in diff
    browser.screenshot("fleet")
    events = [e["reason"] for e in server.get("/api/v1/events", fieldSelector=(
        "involvedObject.kind=Fleet,involvedObject.name=sim"))["items"]]
    assert events.count("FleetRolloutBatchCompleted") >= 3
    assert "ResourceUpdated" in events  # the YAML edit, as the API records it
    updated = server.get("/api/v1/events", fieldSelector="reason=ResourceUpdated,"
                         "involvedObject.name=sim")["items"][0]
    assert updated["actor"] == f"user:{ADMIN[0]}"


def test_repositories_and_resource_syncs_show_their_state_and_never_a_secret(browser, server):
    secret = "hunter2-do-not-show"
    server.put("/api/v1/repositories/config", {
        "apiVersion": "flightctl.io/v1beta1", "kind": "Repository",
        "metadata": {"name": "config"},
        "spec": {"type": "http", "url": "http://127.0.0.1:9/config",
                 "httpConfig": {"username": "deploy", "password": secret}}})
    server.put("/api/v1/resourcesyncs/fleets", {
        "apiVersion": "flightctl.io/v1beta1", "kind": "ResourceSync",
        "metadata": {"name": "fleets"},
        "spec": {"repository": "config", "targetRevision": "main", "path": "/fleets"}})
    for path in ("/admin/repos/repository/", "/admin/repos/repository/config/",
                 "/admin/repos/repository/config/edit/"):
        browser.open(path)
        browser.one("#content")
        assert secret not in browser.driver.page_source, path
    assert "*****" in browser.one("#document").get_attribute("value")
    browser.open("/admin/repos/repository/")
    assert "http://127.0.0.1:9/config" in browser.text()
    browser.screenshot("repositories")
    browser.open("/admin/repos/resourcesync/fleets/")
    assert "Conditions" in browser.text()
    browser.screenshot("resourcesync")
    browser.open("/admin/fleets/fleet/")
    assert browser.css('tr.fleet-row[data-name="sim"]')
    browser.screenshot("fleets")
    browser.open("/admin/flightctl/event/?fieldSelector=involvedObject.kind%3DFleet")
    assert "FleetRolloutBatchCompleted" in browser.text()
    browser.screenshot("events")


def test_a_viewer_finds_no_write_button_and_a_forged_post_is_refused(browser, server):
    browser.login(*VIEWER)
    assert browser.css(".role-badge")[0].text == "viewer"
    name = server.get("/api/v1/devices", labelSelector="fleet=sim")["items"][0]["metadata"][
        "name"]
    for path in ("/admin/devices/device/", f"/admin/devices/device/{name}/",
                 "/admin/fleets/fleet/", "/admin/fleets/fleet/sim/",
                 "/admin/enrollment/enrollmentrequest/", "/admin/repos/repository/"):
        browser.open(path)
        browser.one("#content")
        buttons = [b.text for b in browser.css("#content button, #content .button")
                   if b.text not in ("Filter", "Diff")]
        assert buttons == [], (path, buttons)
        assert not browser.css("textarea, input[name=names], select[name=action]"), path
    browser.open("/admin/fleets/fleet/sim/edit/")
    assert "403" in browser.driver.title or "Forbidden" in browser.text("body")
    # The same request a write button would send, forged with the viewer's own session and
    # CSRF token: refused.
    browser.open("/admin/fleets/fleet/sim/")
    forged = {
        "/admin/fleets/fleet/sim/rollout/pause": "",
        "/admin/fleets/fleet/sim/edit/": "document=" + "kind: Fleet",
        f"/admin/devices/device/{name}/labels": "labels=owned%3Dyes",
        f"/admin/devices/device/{name}/decommission": "",
        "/admin/devices/device/": f"action=labels&names={name}&labels=owned%3Dyes",
        "/admin/enrollment/enrollmentrequest/": "decision=approve&names=x",
    }
    for path, form in forged.items():
        status = browser.driver.execute_async_script("""
            const [path, form, done] = arguments;
            const token = document.cookie.split('; ').find(c => c.startsWith('csrftoken='))
                .split('=')[1];
            fetch(path, {method: 'POST', body: form, credentials: 'same-origin',
                         headers: {'X-CSRFToken': token,
                                   'Content-Type': 'application/x-www-form-urlencoded'}})
                .then(r => done(r.status));
        """, path, form)
        assert status == 403, (path, status)
    assert "owned" not in server.get(f"/api/v1/devices/{name}")["metadata"]["labels"]
    before = server.get("/api/v1/fleets/sim")["metadata"].get("annotations", {})
    assert before.get("fleet-controller/rolloutPaused") is None
