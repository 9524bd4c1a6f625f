"""The agent API: the mutual-TLS server devices talk to (api.md §8).

A separate process (``python -m agent_api``, spawned by ``flightctl-server serve``):
uvicorn serving Django's ASGI application with its own settings
(:mod:`agent_api.settings`) and URL map, so only the agent operations exist on this
port. TLS requires a client certificate verified against the service CA bundle; the verified
certificate reaches the views through :mod:`agent_api.server` and
:mod:`agent_api.middleware`.
"""
