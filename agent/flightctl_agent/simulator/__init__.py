"""The device simulator: thousands of agents in one asyncio process, for load and scale tests.

Each simulated device has its own key and name, enrolls for real (optionally approved through
the user API), talks mutual TLS with its own certificate, keeps its ``/rendered`` long-poll open
and reports status on the agent's cadence; a share of devices can report failures. It applies
nothing: documents are built by :mod:`flightctl_agent.protocol`, as in the real agent. Run it
as ``flightctl-agent simulate`` (extra ``simulator``: aiohttp). See docs/scale.md.

Nothing is imported here: the agent's own command line loads this package, and aiohttp is
optional (``run`` and ``device`` need it).
"""
