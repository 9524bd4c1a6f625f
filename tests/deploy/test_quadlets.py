"""deploy/quadlets/: every unit turns into the service podman's quadlet generator makes of it
(the real generator, podman 5.4.2's from Debian trixie here, and tests/deploy/quadlet.py's
conversion by the documented key mapping, unknown keys refused, write the same services),
systemd accepts those services, and the set starts in the order a deployment needs. The
containers themselves run in test_deploy_guide.py. Cost: under a second."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.quadlet import (
    QUADLET_SUFFIXES,
    UnitError,
    convert,
    dryrun,
    find_generator,
    generate,
    start_order,
)

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "quadlets"
SERVER_UNITS = ("flightctl-api", "flightctl-agent-api", "flightctl-worker", "flightctl-migrate",
                "flightctl-pki-init")


@pytest.fixture(scope="module")
def services():
    return generate(UNITS)


def test_every_unit_converts_and_an_unknown_key_is_refused(services, tmp_path):
    assert {p.name for p in UNITS.iterdir()} == {
        "flightctl.network", "flightctl-db.volume", "flightctl-data.volume",
        "flightctl-db.container", "flightctl-pki-init.container",
        "flightctl-migrate.container", "flightctl-api.container",
        "flightctl-agent-api.container", "flightctl-worker.container",
        "flightctl-alertmanager.container", "flightctl.target"}
    assert len(services) == 11
    odd = tmp_path / "flightctl-odd.container"
    odd.write_text((UNITS / "flightctl-api.container").read_text()
                   .replace("[Container]", "[Container]\nMemory=1G"))
    with pytest.raises(UnitError, match=r"\[Container\] Memory= is not a key this test knows"):
        convert(odd)


def _sections(service):
    """What systemd reads of a service. The one normalisation: ExecStart= is compared as the
    argument list systemd splits it into, since the generator quotes with double quotes and the
    converter with shlex's single quotes (same words). Everything else, including --cidfile,
    --sdnotify, --cgroups=split, --replace/--rm and the order of the flags, is compared as it
    is: the converter writes them as podman 5.4's generator does."""
    return {section: [(key, shlex.split(value) if key == "ExecStart" else value)
                      for key, value in getattr(service, section)]
            for section in ("unit", "service", "install")}


def test_the_real_generator_writes_the_services_the_converter_does(services):
    generator = find_generator()
    assert generator, ("podman's quadlet generator is missing: run scripts/install-test-deps.sh "
                       "(tests/deploy/fetch-quadlet.sh puts Debian trixie's in /opt)")
    version = subprocess.run([str(generator), "-version"], capture_output=True, text=True)
    print(f"{generator}: quadlet {version.stdout.strip()}")
    real = dryrun(UNITS, generator)  # fails on any warning or error it logs
    converted = {n: s for n, s in services.items() if s.kind != "target"}
    # Every quadlet unit is generated, and nothing else: the target is no quadlet unit, which
    # is why install.sh puts it where systemd itself looks.
    assert sorted(real) == sorted(converted)
    assert len(real) == len([p for p in UNITS.iterdir() if p.suffix in QUADLET_SUFFIXES])
    for name, service in converted.items():
        assert _sections(service) == _sections(real[name]), name
        assert service.argv == real[name].argv and service.container == real[name].container


def test_systemd_accepts_every_generated_service(services, tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is required: run scripts/install-test-deps.sh"
    for service in services.values():
        (tmp_path / service.name).write_text(service.text())
    checked = subprocess.run([analyze, "verify", "--man=no",
                              *sorted(str(p) for p in tmp_path.iterdir())],
                             capture_output=True, text=True, cwd=tmp_path)
    # verify exits 0 on unknown keys and bad values too; it says so on stderr.
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr


def test_the_target_starts_network_database_pki_and_migration_before_the_services(services):
    order = start_order(services, "flightctl.target")
    position = {name: i for i, name in enumerate(order)}
    assert position["flightctl-network.service"] < position["flightctl-db.service"]
    assert position["flightctl-db-volume.service"] < position["flightctl-db.service"]
    for service in ("flightctl-api", "flightctl-agent-api", "flightctl-worker"):
        assert position["flightctl-migrate.service"] < position[f"{service}.service"]
        assert "flightctl-migrate.service" in services[f"{service}.service"].deps("Requires")
    assert position["flightctl-db.service"] < position["flightctl-migrate.service"]
    assert position["flightctl-pki-init.service"] < position["flightctl-migrate.service"]
    assert services["flightctl-migrate.service"].oneshot
    assert services["flightctl-pki-init.service"].oneshot
    assert "-d" not in services["flightctl-migrate.service"].argv  # finishes before the rest


def _has(argv, *words):
    return any(argv[i:i + len(words)] == list(words) for i in range(len(argv)))


def test_the_server_containers_share_config_data_secret_and_journal(services):
    for unit in SERVER_UNITS:
        argv = services[f"{unit}.service"].argv
        assert "localhost/flightctl-server:latest" in argv
        assert _has(argv, "--log-driver", "journald")
        assert _has(argv, "-v", "systemd-flightctl-data:/var/lib/flightctl:Z")
        assert _has(argv, "-v", "/etc/flightctl:/etc/flightctl:ro,z")
        assert _has(argv, "--env", "FLIGHTCTL_CONFIG=/etc/flightctl/config.yaml")
        if unit != "flightctl-pki-init":
            assert _has(argv, "--secret",
                        "flightctl-database-url,type=env,target=FLIGHTCTL_DATABASE_URL")
    api = services["flightctl-api.service"].argv
    agent = services["flightctl-agent-api.service"].argv
    assert api[-1] == "user-api" and "3443:3443" in api
    assert agent[-1] == "agent-api" and "7443:7443" in agent
    db = services["flightctl-db.service"].argv
    assert "flightctl-postgresql-password" in db and "localhost/flightctl-db:latest" in db
    assert _has(db, "--network", "systemd-flightctl")


def test_install_puts_units_and_a_private_default_config_in_place_and_keeps_edits(tmp_path):
    def install(*options):
        return subprocess.run(["bash", str(ROOT / "deploy" / "install.sh"), "--root",
                               str(tmp_path), "--no-secrets", *options],
                              capture_output=True, text=True, check=True)

    stale = tmp_path / "etc" / "containers" / "systemd" / "flightctl.target"
    stale.parent.mkdir(parents=True)
    stale.write_text("[Unit]\n")  # where earlier releases put it: systemd never read it there
    install()
    units = tmp_path / "etc" / "containers" / "systemd"
    assert sorted(p.name for p in units.iterdir()) == sorted(
        p.name for p in UNITS.iterdir() if p.suffix in QUADLET_SUFFIXES
        and p.name != "flightctl-alertmanager.container")
    system = tmp_path / "etc" / "systemd" / "system"
    assert [p.name for p in system.iterdir()] == ["flightctl.target"]
    assert generate(units, system)["flightctl.target"].wanted_by == ["multi-user.target"]
    config = tmp_path / "etc" / "flightctl" / "config.yaml"
    assert config.stat().st_mode & 0o777 == 0o640
    assert "agent_endpoint: https://" in config.read_text()
    config.write_text("log_level: debug\n")
    install("--with-alertmanager")
    assert config.read_text() == "log_level: debug\n"
    assert (units / "flightctl-alertmanager.container").exists()


def test_install_for_an_external_database_leaves_the_bundled_one_out(tmp_path):
    """docs/deploy.md step 11: over an installation with the bundled database, the units lose
    it and the migration no longer requires it; without that, starting fails as in systemd."""
    units = tmp_path / "etc" / "containers" / "systemd"
    system = tmp_path / "etc" / "systemd" / "system"
    install = ["bash", str(ROOT / "deploy" / "install.sh"), "--root", str(tmp_path)]
    subprocess.run([*install, "--no-secrets"], capture_output=True, check=True)
    (units / "flightctl-db.container").unlink()  # removed by hand: migrate still requires it
    with pytest.raises(UnitError, match="requires flightctl-db.service: Unit .* not found"):
        start_order(generate(units, system), "flightctl.target")
    # No secrets either: the URL of the operator's server is theirs.
    done = subprocess.run([*install, "--external-database"], capture_output=True, text=True,
                          check=True)
    assert "secret" not in done.stdout
    assert not any(p.name.startswith("flightctl-db.") for p in units.iterdir())
    services = generate(units, system, find_generator())
    migrate = services["flightctl-migrate.service"]
    assert "flightctl-pki-init.service" in migrate.deps("Requires")
    assert "flightctl-pki-init.service" in migrate.deps("After")
    assert not [d for d in migrate.deps("Requires") + migrate.deps("After") if "-db" in d]
    order = start_order(services, "flightctl.target")
    assert order.index("flightctl-migrate.service") < order.index("flightctl-api.service")
    assert "flightctl-db.service" not in order


def test_the_converter_matches_the_generator_on_every_key_it_knows_in_any_order(tmp_path):
    """The mapping beyond what our units happen to use: repeated and unsorted Environment= and
    Label= pairs, a bind mount before a named volume before the network, the default container
    name, a one-shot container (no sd_notify, not detached)."""
    generator = find_generator()
    assert generator, "podman's quadlet generator is missing: run scripts/install-test-deps.sh"
    (tmp_path / "t.container").write_text(
        "[Unit]\nDescription=every key\nWants=t-volume.service\n[Container]\n"
        "Label=b=2 a=1\nVolume=/srv:/srv:ro\nVolume=t.volume:/data:Z\nExec=run \"two words\"\n"
        "PublishPort=1:1\nSecret=s1\nHealthCmd=true\nEnvironment=Z=1 A=\"x y\"\n"
        "Environment=M=2 Z=3\nLabel=c=3\nNetwork=t.network\nImage=localhost/t:1\n"
        "LogDriver=journald\nPublishPort=2:2\nSecret=s0,type=env,target=S\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n[Install]\nWantedBy=t.target\n")
    (tmp_path / "u.container").write_text("[Container]\nImage=localhost/u:1\n")
    (tmp_path / "t.volume").write_text("[Volume]\nLabel=y=2 x=1\n")
    (tmp_path / "t.network").write_text("[Network]\n")
    real, converted = dryrun(tmp_path, generator), generate(tmp_path)
    assert sorted(real) == sorted(converted) == [
        "t-network.service", "t-volume.service", "t.service", "u.service"]
    for name, service in converted.items():
        assert _sections(service) == _sections(real[name]), name
        assert service.container == real[name].container
    assert converted["u.service"].container == "systemd-u"
