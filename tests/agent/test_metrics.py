"""The agent's Prometheus endpoint: loopback only, off unless ``metrics-enabled``."""

from __future__ import annotations

import re
import time

import pytest
import requests
from flightctl_agent import metrics
from flightctl_agent.metrics import OPERATIONS

from tests.net import free_port, wait_for


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in the metrics"
    return float(match.group(1))


def test_metrics_describe_every_call_and_the_certificate(make_agent, render):
    port = free_port()
    agent = make_agent(extra_config={"metrics-enabled": True},
                       env={"FLIGHTCTL_METRICS_ADDRESS": f"127.0.0.1:{port}"})
    name = agent.enroll()
    version = render(name, {"config": [{"name": "c", "inline": [
        {"path": "/etc/motd", "content": "measured"}]}]})
    agent.wait_rendered_version(version)
    text = wait_for(lambda: (t := scrape(port)) and value(
        t, "update_device_status_duration_seconds_count") > 0 and t, 60,
        what="a status report in the metrics")
    for operation in OPERATIONS:
        assert f"# TYPE {operation}_duration_seconds histogram" in text
        assert f"# HELP {operation}_duration_seconds " in text
    assert value(text, "get_rendered_device_spec_duration_seconds_count") >= 1
    assert value(text, "create_enrollmentrequest_duration_seconds_count") >= 1
    assert value(text, "flightctl_device_mgmt_cert_loaded") == 1
    assert value(text, "flightctl_device_mgmt_cert_not_after_timestamp_seconds") > time.time()


def test_no_metrics_endpoint_unless_enabled(make_agent):
    port = free_port()
    agent = make_agent(env={"FLIGHTCTL_METRICS_ADDRESS": f"127.0.0.1:{port}"})
    agent.enroll()
    with pytest.raises(requests.ConnectionError):
        scrape(port)


def test_the_metrics_endpoint_stays_on_loopback():
    with pytest.raises(ValueError, match="not a loopback address"):
        metrics.serve("0.0.0.0:15690")
