"""Fuzz the user API with schemathesis, from the reference OpenAPI document: every operation,
real HTTP against a real server (``flightctl-server serve``), with an admin token; the bar is
no 5xx at all (``not_a_server_error``).

``make fuzz`` runs this with a long budget and prints the figures; ``tests/test_api_fuzz.py``
runs the same with a short one in every test run. Usage::

    python -m bench.fuzz [--max-examples N] [--seed S] [--url URL --token T --ca FILE]

Without ``--url`` it starts its own server on free ports (tests/cli/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DOCUMENT = ROOT.parent / "shared" / "reference" / "flightctl-api" / \
    "core-v1beta1.openapi.yaml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
# WebSocket upgrades cannot be exercised with plain HTTP requests.
EXCLUDED_PATHS = r"^/ws/"


@dataclass
class FuzzResult:
    """What one run did: test cases sent, responses with a 5xx, and their operations."""

    cases: int
    server_errors: int
    operations: int
    failing: list[str] = field(default_factory=list)
    exit_code: int = 0
    output: str = ""


def read_events(path: Path) -> tuple[int, int, int, list[str]]:
    """(cases, 5xx or unanswered responses, operations, failing operations) from
    schemathesis's NDJSON events: every request of every finished scenario."""
    cases, errors, operations, failing = 0, 0, set(), set()
    for line in path.read_text().splitlines():
        body = json.loads(line).get("ScenarioFinished")
        if body is None:
            continue
        recorder = body.get("recorder") or {}
        label = recorder.get("label") or ""
        operations.add(label)
        for interaction in (recorder.get("interactions") or {}).values():
            cases += 1
            status = (interaction.get("response") or {}).get("status_code")
            if status is None or int(status) >= 500:
                errors += 1
                failing.add(label)
    return cases, errors, len(operations), sorted(failing)


#: Objects a second pass addresses by name, so that PUT/PATCH/DELETE and the subresources
#: meet a real row instead of answering 404 to every made-up name.
SEED_NAME = "fuzz"
SEED = {
    "devices": {"metadata": {"name": SEED_NAME, "labels": {"fuzz": "yes"}}},
    "fleets": {"metadata": {"name": SEED_NAME}, "spec": {
        "selector": {"matchLabels": {"fuzz": "yes"}},
        "template": {"spec": {"os": {"image": "quay.io/o/i:{{ .metadata.labels.fuzz }}"}}}}},
    "repositories": {"metadata": {"name": SEED_NAME}, "spec": {
        "type": "git", "url": "https://git.example.com/r.git",
        "httpConfig": {"username": "u", "password": "p"}}},
    "resourcesyncs": {"metadata": {"name": SEED_NAME}, "spec": {
        "repository": SEED_NAME, "targetRevision": "main", "path": "/"}},
}


def seed_objects(url: str, token: str, ca: str) -> None:
    import requests

    headers = {"Authorization": f"Bearer {token}"}
    for plural, body in SEED.items():
        document = {"apiVersion": "flightctl.io/v1beta1", "kind": "", **body}
        requests.put(f"{url}/api/v1/{plural}/{SEED_NAME}", json=document, headers=headers,
                     verify=ca, timeout=30)


def _run(url: str, token: str, ca: str, config: str | None, *, max_examples: int, seed: int,
         phases: str, workers: int, timeout: float) -> tuple[tuple, int, str]:
    with tempfile.TemporaryDirectory(prefix="fctl-fuzz-") as tmp:
        events = Path(tmp) / "events.ndjson"
        command = [str(SCHEMATHESIS)]
        if config:
            path = Path(tmp) / "schemathesis.toml"
            path.write_text(config)
            command += ["--config-file", str(path)]
        command += [
            "run", str(REFERENCE_DOCUMENT), "--url", f"{url}/api/v1",
            "--header", f"Authorization: Bearer {token}", "--tls-verify", ca,
            "--checks", "not_a_server_error", "--max-examples", str(max_examples),
            "--seed", str(seed), "--phases", phases, "--workers", str(workers),
            "--exclude-path-regex", EXCLUDED_PATHS, "--generation-allow-x00", "true",
            "--no-shrink", "--continue-on-failure", "--request-timeout", "30",
            "--report", "ndjson", "--report-ndjson-path", str(events), "--no-color",
            "--generation-database", "none",
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             check=False, cwd=tmp)
        return read_events(events), run.returncode, run.stdout[-6000:] + run.stderr[-2000:]


ALL_PHASES = "examples,coverage,fuzzing"


def fuzz(url: str, token: str, ca: str, *, max_examples: int = 5, seed: int = 1,
         phases: str = ALL_PHASES, unbound_phases: str | None = None, workers: int = 1,
         timeout: float = 3600) -> FuzzResult:
    """Run schemathesis over every user-API operation of the reference document, twice:
    with the names it makes up (``unbound_phases``, default ``phases``), then with the path
    names bound to seeded objects (``phases``)."""
    options = {"max_examples": max_examples, "seed": seed, "workers": workers,
               "timeout": timeout}
    first, code, output = _run(url, token, ca, None, phases=unbound_phases or phases,
                               **options)
    seed_objects(url, token, ca)
    bound = "[parameters]\n" + "".join(f'"path.{p}" = "{SEED_NAME}"\n'
                                          for p in ("name", "fleet", "appname"))
    second, code2, output2 = _run(url, token, ca, bound, phases=phases, **options)
    return FuzzResult(cases=first[0] + second[0], server_errors=first[1] + second[1],
                      operations=max(first[2], second[2]),
                      failing=sorted(set(first[3]) | set(second[3])),
                      exit_code=code or code2, output=output + "\n" + output2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--ca")
    args = parser.parse_args(argv)
    if args.url:
        result = fuzz(args.url, args.token, args.ca, max_examples=args.max_examples,
                      seed=args.seed, workers=args.workers)
    else:
        sys.path.insert(0, str(ROOT))
        from tests.cli.conftest import running_server

        with running_server() as server:
            result = fuzz(server.url, server.token, str(server.ca),
                          max_examples=args.max_examples, seed=args.seed,
                          workers=args.workers)
    print(result.output[-3000:])
    print(json.dumps({"operations": result.operations, "cases": result.cases,
                      "server_errors": result.server_errors, "failing": result.failing,
                      "max_examples": args.max_examples, "seed": args.seed}, indent=2))
    return 1 if result.server_errors else 0


if __name__ == "__main__":
    sys.exit(main())
