"""schemathesis over every user-API operation of the reference OpenAPI document, against a
real server over HTTPS with a real admin token: not one response may be a 5xx.

A short budget for every test run (about two minutes here); ``make fuzz`` runs the same
(bench/fuzz.py) with a long one. Figures in docs/security.md.
"""

from __future__ import annotations

import yaml

from bench.fuzz import ALL_PHASES, EXCLUDED_PATHS, REFERENCE_DOCUMENT, fuzz
from tests.cli.conftest import running_server

METHODS = ("get", "put", "post", "patch", "delete")


def reference_operations() -> set[str]:
    import re

    document = yaml.safe_load(REFERENCE_DOCUMENT.read_text())
    return {f"{method.upper()} {path}" for path, item in document["paths"].items()
            if not re.match(EXCLUDED_PATHS, path) for method in item if method in METHODS}


def test_no_user_api_operation_answers_a_server_error():
    operations = reference_operations()
    assert len(operations) > 70  # the document really is the whole user API
    with running_server() as server:
        # Made-up names meet little beyond 404s: examples and random data there; every
        # phase once the names are bound to seeded objects.
        result = fuzz(server.url, server.token, str(server.ca), max_examples=2, seed=15,
                      phases=ALL_PHASES, unbound_phases="examples,fuzzing", timeout=600)
    assert result.operations == len(operations), result.output
    assert result.cases > 10_000, result.output
    assert (result.server_errors, result.failing) == (0, []), result.output
