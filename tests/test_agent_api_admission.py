"""Enrollment admission control (agent_api.admission): a bounded share per process.

The gate is exercised in its event loop with an application that holds its slot until
released; the storm of the 200-device benchmark run (tests/test_scale.py) exercises it end to
end with real enrollments."""

from __future__ import annotations

import asyncio

import pytest


def test_enrollment_calls_beyond_the_running_and_waiting_ones_are_told_to_come_back(
        settings, monkeypatch):
    from agent_api.admission import Admission

    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_concurrency", 1)
    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_queue", 1)
    gate, release, ran, refused = Admission(), asyncio.Event(), [], []

    async def application(scope, receive, send):
        ran.append(scope["n"])
        await release.wait()

    async def refuse(answer):
        refused.append(answer)

    async def storm():
        calls = [asyncio.create_task(gate.run(application, {"n": n}, None, None, refuse))
                 for n in range(3)]
        await asyncio.sleep(0.05)
        assert ran == [0] and gate.waiting == 1  # one runs, one waits, the third is refused
        code, body, headers = refused[0]
        assert code == 503 and body["code"] == 503 and int(headers["Retry-After"]) >= 1
        release.set()
        await asyncio.gather(*calls)
        assert ran == [0, 1] and gate.refused == 1 and gate.waiting == 0

    asyncio.run(storm())
    assert gate.applies("/api/v1/enrollmentrequests")
    assert gate.applies("/api/v1/enrollmentrequests/abc/tpmchallenge")
    assert not gate.applies("/api/v1/enrollmentrequestsx")
    assert not gate.applies("/api/v1/devices/abc/status")


def test_new_enrollment_requests_start_in_arrival_order_and_polls_are_not_paced(
        settings, monkeypatch):
    """The first new request starts at once, a certificate poll right after it, not behind
    the paced ones; the paced ones follow in the order they came, released by the storm's
    ticker, which stops once the storm is over."""
    from agent_api import admission as module
    from agent_api.admission import ENROLLMENT_PREFIX as PREFIX
    from agent_api.admission import Admission

    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_rate", 400)
    monkeypatch.setattr(settings.FLIGHTCTL, "agent_api_workers", 2)
    monkeypatch.setattr(module, "IDLE", 0.1)
    gate, started = Admission(), []

    async def application(scope, receive, send):
        started.append((scope["method"], scope["n"]))

    async def refuse(answer):
        raise AssertionError(answer)

    def call(method: str, path: str, n: int):
        return gate.run(application, {"method": method, "path": path, "n": n}, None, None,
                        refuse)

    async def storm():
        await asyncio.gather(*(call("POST", PREFIX, n) for n in range(4)),
                             call("GET", PREFIX + "/x", 4))
        while gate.pace is not None:  # the ticker ends IDLE seconds after the last request
            await asyncio.sleep(0.05)

    asyncio.run(storm())
    assert started == [("POST", 0), ("GET", 4), ("POST", 1), ("POST", 2), ("POST", 3)]


def test_new_requests_waiting_for_their_pace_count_against_the_queue_bound(
        settings, monkeypatch):
    from agent_api import admission as module
    from agent_api.admission import ENROLLMENT_PREFIX as PREFIX
    from agent_api.admission import Admission

    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_rate", 10)  # 1 a second to start
    monkeypatch.setattr(settings.FLIGHTCTL, "agent_api_workers", 2)
    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_queue", 1)
    monkeypatch.setattr(module, "IDLE", 0.1)
    gate, started, refused = Admission(), [], []

    async def application(scope, receive, send):
        started.append(scope["n"])

    async def refuse(answer):
        refused.append(answer[0])

    async def storm():
        await asyncio.gather(*(gate.run(application, {"method": "POST", "path": PREFIX,
                                                      "n": n}, None, None, refuse)
                               for n in range(3)))
        while gate.pace is not None:
            await asyncio.sleep(0.05)

    asyncio.run(storm())
    # the first starts at once, the second waits for its turn, the third is told to retry
    assert started == [0, 1] and refused == [503] and gate.refused == 1


def _storm_pace(share=50.0, target=0.2):
    from agent_api.admission import EnrollmentPace

    return EnrollmentPace(share, target, now=0.0)


def _window(pace, now: float, reports=(), lag=0.0, connected=True) -> float:
    """One window of signal (status PUT times, the loop's worst lag), then its adjustment."""
    for seconds in reports:
        pace.status_report(seconds)
    pace.loop_lag(lag)
    pace.adjust(now, connected)
    return pace.rate


def test_a_storm_starts_slow_and_speeds_up_while_the_connected_devices_are_answered_fast():
    from agent_api.admission import START, STEP

    pace = _storm_pace()
    assert pace.rate == 50 * START
    rates = [_window(pace, t, reports=[0.01, 0.05], lag=0.002) for t in range(1, 6)]
    assert rates == [50 * START + k * 50 * STEP for k in range(1, 6)]
    assert all(worst == 0.05 for worst, _ in pace.history)


def test_a_slow_status_report_or_a_late_event_loop_cuts_the_rate_down_to_its_floor():
    from agent_api.admission import CUT, FLOOR

    pace = _storm_pace()
    start = pace.rate
    assert _window(pace, 1, reports=[0.01, 0.35]) == start * CUT  # one report over 200 ms
    # The loop woke late: cut again, to the floor (not below: 10 x 0.7 x 0.7 is 4.9).
    assert _window(pace, 2, reports=[0.01], lag=0.3) == 50 * FLOOR
    for t in range(3, 20):  # still slow: never below the floor, the storm goes on
        _window(pace, t, reports=[1.0])
    assert pace.rate == 50 * FLOOR > 0 and pace.cuts == 19
    assert pace.lowest == 50 * FLOOR


def test_the_rate_grows_to_the_share_of_enrollment_rate_and_no_further():
    pace = _storm_pace()
    for t in range(1, 40):
        _window(pace, t, reports=[0.01])
    assert pace.rate == pace.highest == 50


def test_with_no_connected_device_the_rate_climbs_to_the_ceiling_despite_the_loop_lag():
    """Nobody to protect: the loop's lag from the enrollments themselves does not hold the
    storm back. Once a device is connected, the lag counts."""
    from agent_api.admission import CUT

    pace = _storm_pace()
    for t in range(1, 40):
        _window(pace, t, lag=0.5, connected=False)
    assert pace.rate == 50 and all(worst is None for worst, _ in pace.history)
    assert _window(pace, 40, lag=0.5) == 50 * CUT


def test_a_process_counts_as_connected_while_a_long_poll_waits_or_reports_come_in(
        monkeypatch):
    from agent_api import admission as module
    from agent_api.admission import QUIET, Admission

    gate = Admission()
    monkeypatch.setattr(module.listener, "waiters", {})
    assert not gate.connected(1000.0)
    gate.status_report(999.0, 999.01)  # outside a storm only its time is kept
    assert gate.connected(1000.0) and not gate.connected(999.01 + QUIET)
    monkeypatch.setattr(module.listener, "waiters", {"org/device": set()})
    assert gate.connected(5000.0)


def test_the_window_is_judged_once_per_second_and_requests_are_released_at_the_rate():
    from agent_api.admission import TICK

    pace = _storm_pace(share=10.0)  # starts at 2 a second
    assert _window(pace, 0.5, reports=[1.0]) == 2  # mid-window: no judgement yet
    assert pace.take(0.0)  # the first request starts at once
    assert not pace.take(0.2)
    assert pace.take(0.5) and not pace.take(0.5)  # one every 500 ms, no burst after a wait
    assert not pace.take(0.9) and pace.take(5.0) and not pace.take(5.0)
    fast = _storm_pace(share=200.0)  # 40 a second: two a tick, a tick's worth at most
    fast.take(0.0)
    assert sum(fast.take(10.0) for _ in range(5)) == int(40 * TICK)


def test_the_latency_target_is_a_number_of_milliseconds_checked_at_start_up(tmp_path):
    from flightctl import config

    loaded = config.load(tmp_path, environ={"FLIGHTCTL_ENROLLMENT_LATENCY_TARGET": "250"})
    assert loaded.enrollment_latency_target == 250
    assert config.Config().enrollment_latency_target == 150
    with pytest.raises(config.ConfigError, match="ENROLLMENT_LATENCY_TARGET"):
        config.load(tmp_path, environ={"FLIGHTCTL_ENROLLMENT_LATENCY_TARGET": "0"})
