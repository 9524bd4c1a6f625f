"""Enrollment admission control (agent_api.admission): a bounded share per process.

The gate is exercised in its event loop with an application that holds its slot until
released; the storm of the 200-device benchmark run (tests/test_scale.py) exercises it end to
end with real enrollments."""

from __future__ import annotations

import asyncio


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


def test_new_enrollment_requests_are_paced_at_the_process_share_of_the_rate(
        settings, monkeypatch):
    """``enrollment_rate`` 40/s over 2 processes: this process starts a new request every
    50 ms (by the event loop's clock, which the gate schedules on); polls are not paced."""
    from agent_api.admission import ENROLLMENT_PREFIX as PREFIX
    from agent_api.admission import Admission

    monkeypatch.setattr(settings.FLIGHTCTL, "enrollment_rate", 40)
    monkeypatch.setattr(settings.FLIGHTCTL, "agent_api_workers", 2)
    gate, started = Admission(), []

    async def application(scope, receive, send):
        started.append((scope["method"], asyncio.get_running_loop().time()))

    async def refuse(answer):
        raise AssertionError(answer)

    def call(method: str, path: str):
        return gate.run(application, {"method": method, "path": path}, None, None, refuse)

    async def storm():
        await asyncio.gather(*(call("POST", PREFIX) for _ in range(4)),
                             call("GET", PREFIX + "/x"))

    asyncio.run(storm())
    # The first request starts at once, the poll right after it, not behind the paced ones.
    assert [method for method, _ in started[:2]] == ["POST", "GET"]
    posts = [t for method, t in started if method == "POST"]
    assert len(posts) == 4
    # Each start at least one interval after the previous (sleeps never end early).
    assert all(b - a >= 0.05 - 1e-3 for a, b in zip(posts, posts[1:], strict=False))
