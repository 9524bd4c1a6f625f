"""The alert exporter against a real Alertmanager (Debian's prometheus-alertmanager) on
loopback."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import requests

from tests.net import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory):
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is needed: run scripts/install-test-deps.sh")
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "alertmanager.yml").write_text(
        'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n')
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={home / 'alertmanager.yml'}", f"--storage.path={home}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{url}/-/ready", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "alertmanager did not start"
        time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture
def exporter(settings, monkeypatch, alertmanager):
    from flightctl.alerts import export_alerts

    monkeypatch.setattr(settings.FLIGHTCTL, "alertmanager_url", alertmanager)
    return export_alerts


def active(url: str) -> set[tuple[str, str]]:
    alerts = requests.get(f"{url}/api/v2/alerts", params={"active": "true"}, timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"]["resource"]) for a in alerts
            if a["status"]["state"] == "active"}


def event(name: str, reason: str, kind: str = "Device") -> None:
    from flightctl.api.events import record_event

    record_event(ORG, kind, name, reason, f"{reason} on {name}", actor="service:test")


def test_device_problems_become_alerts_and_their_recovery_resolves_them(exporter, alertmanager):
    event("d1", "DeviceDisconnected")
    event("d2", "DeviceCPUWarning")
    event("d3", "DeviceApplicationError")
    event("d9", "ResourceUpdated")  # not an alert
    assert exporter() == 3
    assert active(alertmanager) == {("DeviceDisconnected", "d1"), ("DeviceCPUWarning", "d2"),
                                    ("DeviceApplicationError", "d3")}
    alert = next(a for a in requests.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
                 if a["labels"]["resource"] == "d1")
    assert alert["labels"]["org_id"] == ORG and alert["labels"]["kind"] == "Device"
    assert alert["annotations"]["summary"] == "DeviceDisconnected on d1"

    # Within a group the newest wins; the alert it replaces ends.
    event("d2", "DeviceCPUCritical")
    event("d1", "DeviceConnected")
    exporter()
    assert active(alertmanager) == {("DeviceCPUCritical", "d2"),
                                    ("DeviceApplicationError", "d3")}

    # A deleted resource takes its alerts along; the next run has nothing left to send.
    event("d2", "ResourceDeleted")
    event("d3", "DeviceApplicationHealthy")
    exporter()
    assert active(alertmanager) == set()
    assert exporter() == 0


def test_resolutions_alertmanager_missed_are_sent_again(exporter, alertmanager, settings,
                                                        monkeypatch):
    event("e1", "DeviceMemoryWarning")
    exporter()
    assert ("DeviceMemoryWarning", "e1") in active(alertmanager)
    event("e1", "DeviceMemoryNormal")
    monkeypatch.setattr(settings.FLIGHTCTL, "alertmanager_url", f"http://127.0.0.1:{free_port()}")
    assert exporter() == 1  # tried, not delivered
    monkeypatch.setattr(settings.FLIGHTCTL, "alertmanager_url", alertmanager)
    assert exporter() == 1  # the resolution again
    assert ("DeviceMemoryWarning", "e1") not in active(alertmanager)


def test_nothing_runs_without_an_alertmanager(settings):
    from flightctl.alerts import export_alerts
    from flightctl.models import Checkpoint

    assert settings.FLIGHTCTL.alertmanager_url == ""
    event("x", "DeviceDisconnected")
    assert export_alerts() == 0
    assert not Checkpoint.objects.exists()
