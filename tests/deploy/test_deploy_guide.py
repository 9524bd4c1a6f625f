"""docs/deploy.md, run as written: a deployment on this host, from building the images to an
upgrade and an uninstall, against real containers.

Every ``sh`` block runs in order in one shell, as root (the guide is for root), with
``systemctl`` being the stand-in of tests/deploy/quadlet.py (systemd is not PID 1 here): it
starts each unit's container with the ``podman run`` of the service podman's quadlet generator
writes for it (podman 5.4.2's from Debian trixie, since 4.3 here has none), in dependency
order. Steps 1 to 6 run in a copy of the
previous release's checkout (its image, its migrations), step 7 on in a copy of this one, so the
upgrade goes from the previous commit's image to the current one on the same database and
volume. Between steps the test only prints markers and the image in use, and before step 11
(the move to an external PostgreSQL) it starts that server, tests/deploy/external-postgresql.sh:
a second PostgreSQL container with TLS, outside the deployment, and sets the guide's ``DB_*``
variables to it.

Cost: about 4 minutes here (two server image builds, about 35 s each, on cached base images;
the rest is the deployment itself; the move to the external PostgreSQL, step 11, 20 to 30 s of
it: its server starts in 2 to 3 s, the move, restart and the device's new template take 18
to 24 s).
The bases are built once per change of build-base.sh and
reused across runs (podman's image store).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.test_first_hour import SHELL_BLOCK, _copy_checkout

CHECKOUT = Path(__file__).resolve().parents[2]
GUIDE = CHECKOUT / "docs" / "deploy.md"
UPGRADE_HEADING = "## 7. Upgrade"
EXTERNAL_HEADING = "## 11. An external PostgreSQL"
EXTERNAL_DB = CHECKOUT / "tests" / "deploy" / "external-postgresql.sh"
CONTAINERS = ("flightctl-db", "flightctl-pki-init", "flightctl-migrate", "flightctl-api",
              "flightctl-agent-api", "flightctl-worker")


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=CHECKOUT, capture_output=True, text=True,
                          check=True).stdout.strip()


DEPLOYMENT = ("deploy/quadlets/flightctl-api.container", "flightctl/cli/deploy_commands.py")


def previous_release() -> str:
    """The newest commit before this one that has the deployment (for a merge commit, the
    merged branch's last one: the main line before it may predate deploy/)."""
    for commit in _git("rev-list", "HEAD^@").splitlines():
        if all(subprocess.run(["git", "cat-file", "-e", f"{commit}:{path}"], cwd=CHECKOUT,
                              capture_output=True).returncode == 0 for path in DEPLOYMENT):
            return commit
    raise AssertionError("no commit before HEAD has deploy/quadlets/ and the deployment "
                         "commands: there is no previous release to upgrade from")


def _export(commit: str, into: Path) -> Path:
    """``git archive`` of ``commit``: its code, its images' recipes, its units."""
    into.mkdir(parents=True)
    archive = into.parent / f"{commit}.tar"
    subprocess.run(["git", "archive", "-o", str(archive), commit], cwd=CHECKOUT, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into


def _script(old: Path, new: Path, external: Path) -> tuple[str, int]:
    """The guide's blocks as one script: steps before the upgrade in ``old``, then ``new``;
    before step 11, the external PostgreSQL started and the guide's ``DB_*`` variables set."""
    text = GUIDE.read_text()
    before, after = text.split(UPGRADE_HEADING, 1)
    upgraded, moved = after.split(EXTERNAL_HEADING, 1)
    lines = ["set -eo pipefail", f"cd {old}"]
    image = "podman image inspect --format '{{.Id}}' localhost/flightctl-server:latest"
    number = 0
    for part, blocks in (("old", SHELL_BLOCK.findall(before)),
                         ("new", SHELL_BLOCK.findall(upgraded)),
                         ("external", SHELL_BLOCK.findall(moved))):
        if part == "new":
            lines += [f'echo "::: image before the upgrade $({image})"', f"cd {new}"]
        if part == "external":
            # An assignment first: a failure of the script stops the run (set -e).
            lines += ['echo "::: the external PostgreSQL at $(date -u +%T)"',
                      f"external_db=$(sh {EXTERNAL_DB} start {external})",
                      'eval "$external_db"']
        for block in blocks:
            number += 1
            lines += [f'echo "::: guide block {number} at $(date -u +%T)"', block]
    lines.append(f'echo "::: image after the upgrade $({image})"')
    return "\n".join(lines), number


def _clean_host() -> None:
    """What the guide's uninstall step removes, for a run that stopped before it."""
    for name in CONTAINERS:
        subprocess.run(["podman", "rm", "-f", "-i", "-t", "5", name], capture_output=True)
    subprocess.run(["podman", "volume", "rm", "-f", "systemd-flightctl-db",
                    "systemd-flightctl-data"], capture_output=True)
    subprocess.run(["podman", "network", "rm", "-f", "systemd-flightctl"], capture_output=True)
    subprocess.run(["podman", "secret", "rm", "flightctl-postgresql-password",
                    "flightctl-database-url"], capture_output=True)
    for unit in [*Path("/etc/containers/systemd").glob("flightctl*"),
                 *Path("/etc/systemd/system").glob("flightctl*.target")]:
        unit.unlink()
    shutil.rmtree("/etc/flightctl", ignore_errors=True)
    subprocess.run(["sh", str(EXTERNAL_DB), "remove"], capture_output=True)


@pytest.fixture
def host():
    """This machine as the guide's host: root, and no Flight Control installed on it."""
    assert os.geteuid() == 0, "the deployment guide is run as root (podman rootful, /etc)"
    for tool in ("podman", "mmdebstrap", "openssl", "psql"):  # psql: step 11
        assert shutil.which(tool), f"{tool} is required: run scripts/install-test-deps.sh"
    assert not Path("/etc/flightctl").exists(), \
        "/etc/flightctl exists: this host has a Flight Control installation the test would clobber"
    _clean_host()  # leftovers of an interrupted run: containers, volumes, secrets
    for port in (3443, 7443):  # the units publish the product's own ports, as on a host
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, \
                f"port {port} is taken on this host: the deployment publishes it"
    yield
    _clean_host()


def test_the_deployment_guide_runs_as_written_through_an_upgrade(host):
    work = Path(tempfile.mkdtemp(prefix="fctl-deploy-guide-"))
    old = _export(previous_release(), work / "old")
    new = _copy_checkout(work / "new")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    standin = bin_dir / "systemctl"
    standin.write_text(f"#!/bin/sh\nexec {sys.executable} "
                       f"{CHECKOUT / 'tests' / 'deploy' / 'quadlet.py'} \"$@\"\n")
    standin.chmod(0o755)
    (work / "home").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FLIGHTCTL_", "DJANGO_", "VIRTUAL_ENV"))}
    env.update(HOME=str(work / "home"), SYSTEMCTL_STATE_DIR=str(work / "systemctl"),
               # flightctl, flightctl-agent and the Python that builds the wheels: this run's.
               PATH=os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                     env["PATH"]]))
    script, blocks = _script(old, new, work / "external-db")
    transcript_path = work / "guide.log"
    with open(transcript_path, "w") as out:
        shell = subprocess.Popen(["bash", "-c", script], cwd=old, env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = shell.wait(1500)
        finally:
            try:  # the agent the guide leaves running until its uninstall step
                os.killpg(shell.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    transcript = transcript_path.read_text()
    print(transcript[-6000:])
    assert code == 0, transcript[-4000:]
    assert transcript.count("::: guide block") == blocks

    # The schema was migrated once: no migration applied twice across start, restarts,
    # restore and upgrade (later migrate runs found nothing to do, or only the new release's).
    applied = re.findall(r"Applying (\S+)\.\.\. OK", transcript)
    assert len(applied) > 20 and len(applied) == len(set(applied))
    # The operator's CA signed the server certificate, the agent enrolled through the agent
    # port once and got the fleet's files before and after the upgrade, as the same device.
    assert "PKI created" in transcript and "server certificate /var/lib/flightctl" in transcript
    assert transcript.count("Enrollment request") == 1
    names = re.findall(r"^([0-9a-v]{52}) (?:is in|now runs in|still runs in) berlin",
                       transcript, re.M)
    assert len(names) == 3 and len(set(names)) == 1, names
    assert re.search(rf"^{names[0]} now runs in berlin \(tier standard\)\.$", transcript, re.M)
    # Moved to the external server: restored there, started without the bundled database
    # (after the move no flightctl-db starts; the migration and the services do), and the
    # device got the fleet's next template through it.
    moved = transcript.split("::: the external PostgreSQL", 1)[1]
    assert transcript.count("Restored the backup of") == 2 and "Restored the backup" in moved
    assert "Starting flightctl-db.service" not in moved
    assert "Starting flightctl-migrate.service" in moved and "Starting flightctl-api" in moved
    assert re.search(rf"^{names[0]} still runs in berlin", moved, re.M)
    # A console session crossed from the API container to the agent API container's device.
    assert re.search(r"^flightctl-console$", transcript, re.M)
    before = re.search(r"::: image before the upgrade (\S+)", transcript).group(1)
    after = re.search(r"::: image after the upgrade (\S+)", transcript).group(1)
    assert before != after
    # The previous release's image, untagged by the new build: not kept.
    subprocess.run(["podman", "rmi", before], capture_output=True)
    # The uninstall step left nothing behind.
    assert not Path("/etc/flightctl").exists()
    assert subprocess.run(["podman", "volume", "exists", "systemd-flightctl-data"]
                          ).returncode == 1
    shutil.rmtree(work, ignore_errors=True)
