"""``flightctl``: the user command line of Flight Control for Python.

A client of the v1beta1 user API only: it needs click, requests and PyYAML (plus cryptography
for ``certificate request``) and never imports Django or the server's modules, so it works on
a laptop with no server configuration. Layout:

* :mod:`.config` — the saved login (``~/.config/flightctl/client.yaml``);
* :mod:`.http` — the API client (version header, token, ``Status`` errors, paging);
* :mod:`.kinds` — resource kinds, their short names and paths;
* :mod:`.output` — JSON/YAML/name output and the reference's tables;
* :mod:`.cli` — the click group, shared options, the one-line error boundary;
* :mod:`.commands` — the commands, by topic.
"""

from flightctl.cli.client.cli import main

__all__ = ["main"]
