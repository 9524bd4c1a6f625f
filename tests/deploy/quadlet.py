"""Quadlet units turned into the systemd services podman's generator makes of them, and a
stand-in ``systemctl`` that starts those services' containers the way systemd would.

Podman's quadlet generator (``/usr/libexec/podman/quadlet``) ships with podman 4.4 and newer;
this machine's podman is 4.3 and has none, and systemd is not PID 1 here. So each unit is also
converted here by the key mapping of podman-systemd.unit(5), for exactly the keys
deploy/quadlets/ uses: a key not in ``KNOWN_KEYS`` is an error, so the units cannot drift into
something neither this code nor the test checks. The conversion writes the services as podman
5.4's generator does, entry for entry and flag for flag (tests/deploy/test_quadlets.py compares
the two, with the generator of Debian trixie's podman 5.4.2 that
tests/deploy/fetch-quadlet.sh installs). The stand-in uses the real generator's output where
one is installed and this conversion otherwise.

A ``.target`` is no quadlet unit: the generator ignores it, and systemd reads it from its own
unit directory (deploy/install.sh puts it in /etc/systemd/system).

Run as ``python -m tests.deploy.quadlet COMMAND ...``: the ``systemctl`` stand-in of the
deployment test (daemon-reload, start, stop, restart, is-active, cat; quadlet units from
``$QUADLET_UNIT_DIR``, default /etc/containers/systemd, plain units from
``$SYSTEMD_UNIT_DIR``, default /etc/systemd/system).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PODMAN = "/usr/bin/podman"
# The host's podman's generator first; else the one tests/deploy/fetch-quadlet.sh extracts.
GENERATORS = (Path("/usr/libexec/podman/quadlet"), Path("/opt/flightctl-test/quadlet/quadlet"))
QUADLET_SUFFIXES = (".container", ".volume", ".network")
UNIT_SUFFIXES = (*QUADLET_SUFFIXES, ".target")

# Per section, the keys our units use and quadlet (or systemd, for [Unit], [Service] and
# [Install], which quadlet copies into the service) understands.
KNOWN_KEYS = {
    "Container": {"ContainerName", "Image", "Exec", "Network", "Volume", "PublishPort",
                  "Environment", "Secret", "LogDriver", "HealthCmd", "Label"},
    "Network": {"Label"},
    "Volume": {"Label"},
    "Unit": {"Description", "Requires", "After", "PartOf", "Wants"},
    "Service": {"Type", "RemainAfterExit", "Restart", "TimeoutStartSec", "TimeoutStopSec"},
    "Install": {"WantedBy"},
}
SECTION_OF = {".container": "Container", ".volume": "Volume", ".network": "Network"}
Entries = list[tuple[str, str]]


class UnitError(ValueError):
    """A unit file quadlet would reject or that uses a key this converter does not know."""


def find_generator() -> Path | None:
    return next((g for g in GENERATORS if g.exists()), None)


def parse_text(text: str, where: str = "") -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat (Volume=, Environment=, ...)."""
    entries, section = [], None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or section is None:
            raise UnitError(f"{where}:{number}: not a key=value line in a section: {raw}")
        entries.append((section, key.strip(), value.strip()))
    return entries


def parse(path: Path) -> list[tuple[str, str, str]]:
    return parse_text(Path(path).read_text(), Path(path).name)


@dataclass
class Service:
    """A generated systemd service (or a plain unit): its name, its [Unit], [Service] and
    [Install] entries in the generator's order, and the command line its ExecStart= runs."""

    name: str
    source: str
    kind: str  # container, volume, network or target
    argv: list[str] = field(default_factory=list)
    container: str = ""
    unit: Entries = field(default_factory=list)
    service: Entries = field(default_factory=list)
    install: Entries = field(default_factory=list)

    def get(self, key: str, default: str = "") -> str:
        """A [Service] value (the last one: systemd's rule for single-valued keys)."""
        return next((v for k, v in reversed(self.service) if k == key), default)

    @property
    def oneshot(self) -> bool:
        return self.get("Type") == "oneshot"

    @property
    def wanted_by(self) -> list[str]:
        return [n for k, v in self.install if k == "WantedBy" for n in v.split()]

    def deps(self, key: str) -> list[str]:
        return [name for k, value in self.unit if k == key for name in value.split()]

    def text(self) -> str:
        """The service file, as the generator writes it (for systemd-analyze verify)."""
        lines = ["[Unit]", *[f"{k}={v}" for k, v in self.unit]]
        if self.service or self.argv:
            lines += ["", "[Service]", *[f"{k}={v}" for k, v in self.service]]
        if self.install:
            lines += ["", "[Install]", *[f"{k}={v}" for k, v in self.install]]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, name: str, text: str, kind: str) -> Service:
        """A service the real generator wrote (its own ``X-`` copies of the quadlet sections
        and comments are left out: systemd ignores them)."""
        svc = cls(name, "", kind)
        for section, key, value in parse_text(text, name):
            if section in ("Unit", "Service", "Install"):
                getattr(svc, section.lower()).append((key, value))
        svc.source = next((v for k, v in svc.unit if k == "SourcePath"), "")
        svc.argv = shlex.split(svc.get("ExecStart"))
        if kind == "container":
            svc.container = svc.argv[svc.argv.index("--name") + 1].replace(
                "%N", name.removesuffix(".service"))
        return svc


def _pairs(values: list[str]) -> list[str]:
    """Environment=/Label= values: KEY=VALUE words (shell quoting), one dict by key as the
    generator keeps them (a later value of a key wins), emitted sorted by key."""
    merged: dict[str, str] = {}
    for value in values:
        for word in shlex.split(value):
            key, _, val = word.partition("=")
            merged[key] = val
    return [f"{key}={merged[key]}" for key in sorted(merged)]


def convert(path: Path) -> Service:
    """The service quadlet generates from the unit at ``path`` (podman-systemd.unit(5)), as
    podman 5.4's generator writes it."""
    path = Path(path).absolute()
    stem, suffix = path.stem, path.suffix
    if suffix not in UNIT_SUFFIXES:
        raise UnitError(f"{path.name}: not a quadlet unit")
    entries = parse(path)
    own = SECTION_OF.get(suffix)
    for section, key, _ in entries:
        if section != own and section not in ("Unit", "Service", "Install"):
            raise UnitError(f"{path.name}: section [{section}] is not valid in a {suffix} unit")
        if key not in KNOWN_KEYS[section]:
            raise UnitError(f"{path.name}: [{section}] {key}= is not a key this test knows "
                            "(add its podman-systemd.unit(5) mapping to tests/deploy/quadlet.py)")
    name = {".container": f"{stem}.service", ".volume": f"{stem}-volume.service",
            ".network": f"{stem}-network.service", ".target": f"{stem}.target"}[suffix]
    svc = Service(name, str(path), suffix[1:])
    mine = [(s, k, v) for s, k, v in entries if s == own]
    for section, key, value in entries:
        if section in ("Unit", "Service", "Install"):
            getattr(svc, section.lower()).append((key, value))
    if suffix == ".target":  # a plain systemd unit, installed as it is
        return svc
    # Every generated service waits for the network (quadlet's default dependencies), names its
    # source and needs the container storage mounted.
    svc.unit[:0] = [("Wants", "network-online.target"), ("After", "network-online.target")]
    svc.unit += [("SourcePath", str(path)), ("RequiresMountsFor", "%t/containers")]

    def depend(on: str) -> None:
        svc.unit += [("Requires", on), ("After", on)]

    if suffix in (".network", ".volume"):
        labels = _pairs([v for _, k, v in mine if k == "Label"])
        svc.argv = [PODMAN, suffix[1:], "create", "--ignore",
                    *[a for pair in labels for a in ("--label", pair)], f"systemd-{stem}"]
        svc.service += [("ExecStart", shlex.join(svc.argv)), ("SyslogIdentifier", "%N"),
                        ("Type", "oneshot"), ("RemainAfterExit", "yes")]
        return svc
    values = {k: v for _, k, v in mine if k in ("ContainerName", "Image", "Exec", "HealthCmd",
                                                 "LogDriver")}
    if "Image" not in values:
        raise UnitError(f"{path.name}: [Container] has no Image=")
    svc.container = values.get("ContainerName", f"systemd-{stem}")
    argv = [PODMAN, "run", "--name", values.get("ContainerName", "systemd-%N"),
            "--cidfile=%t/%N.cid", "--replace", "--rm"]
    if "LogDriver" in values:
        argv += ["--log-driver", values["LogDriver"]]
    argv.append("--cgroups=split")
    for _, key, value in mine:
        if key == "Network":
            if value.endswith(".network"):
                depend(f"{value[:-8]}-network.service")
                value = f"systemd-{value[:-8]}"
            argv += ["--network", value]
    if not svc.oneshot:  # a long-running container tells systemd it is up through conmon
        argv += ["--sdnotify=conmon", "-d"]
    for _, key, value in mine:
        if key == "Volume":
            source, sep, rest = value.partition(":")
            if source.endswith(".volume"):
                depend(f"{source[:-7]}-volume.service")
                source = f"systemd-{source[:-7]}"
            elif source.startswith("/"):
                svc.unit.append(("RequiresMountsFor", source))
            argv += ["-v", source + sep + rest]
    argv += [a for _, k, v in mine if k == "PublishPort" for a in ("--publish", v)]
    argv += [a for pair in _pairs([v for _, k, v in mine if k == "Environment"])
             for a in ("--env", pair)]
    argv += [a for pair in _pairs([v for _, k, v in mine if k == "Label"])
             for a in ("--label", pair)]
    argv += [a for _, k, v in mine if k == "Secret" for a in ("--secret", v)]
    if "HealthCmd" in values:
        argv += ["--health-cmd", values["HealthCmd"]]
    svc.argv = argv + [values["Image"], *shlex.split(values.get("Exec", ""))]
    stop = f"{PODMAN} rm -v -f -i --cidfile=%t/%N.cid"
    svc.service += [("Environment", "PODMAN_SYSTEMD_UNIT=%n"), ("KillMode", "mixed"),
                    ("ExecStop", stop), ("ExecStopPost", f"-{stop}"), ("Delegate", "yes")]
    if not svc.get("Type"):
        svc.service += [("Type", "notify"), ("NotifyAccess", "all")]
    svc.service += [("SyslogIdentifier", "%N"), ("ExecStart", shlex.join(svc.argv))]
    return svc


def units(unit_dir: Path) -> list[Path]:
    return sorted(p for p in Path(unit_dir).iterdir() if p.suffix in UNIT_SUFFIXES)


def dryrun(unit_dir: Path, generator: Path) -> dict[str, Service]:
    """The services podman's generator writes for the quadlet units of ``unit_dir``."""
    dry = subprocess.run([str(generator), "-dryrun"], capture_output=True, text=True,
                         env={**os.environ, "QUADLET_UNIT_DIRS": str(Path(unit_dir).absolute())})
    # It logs each file it loads (and that it found none, for a directory without units, as
    # after an uninstall); anything else it says is a complaint about a unit.
    complaints = [line for line in dry.stderr.splitlines()
                  if "Loading source unit file" not in line and "No files parsed" not in line]
    if dry.returncode != 0 or complaints:
        raise UnitError(f"quadlet -dryrun rejected the units: {' '.join(complaints)}")
    kinds = {"-network.service": "network", "-volume.service": "volume"}
    return {name: Service.from_text(
        name, text, next((k for s, k in kinds.items() if name.endswith(s)), "container"))
        for name, text in _dryrun_services(dry.stdout).items()}


def generate(unit_dir: Path, system_dir: Path | None = None,
             generator: Path | None = None) -> dict[str, Service]:
    """Every service systemd would have: the quadlet units of ``unit_dir`` through the real
    ``generator`` when given, else by :func:`convert`; plain ``.target`` units from
    ``system_dir`` (default: ``unit_dir``'s, for checking a unit directory on its own)."""
    quadlets = [p for p in units(unit_dir) if p.suffix in QUADLET_SUFFIXES]
    services = dryrun(unit_dir, generator) if generator else {
        s.name: s for s in map(convert, quadlets)}
    # Ours only: systemd's directory holds the host's other units too.
    plain = [p for p in units(system_dir or unit_dir)
             if p.suffix == ".target" and p.name.startswith("flightctl")]
    services.update((s.name, s) for s in map(convert, plain))
    return services


def _dryrun_services(output: str) -> dict[str, str]:
    """``quadlet -dryrun`` prints each service after a ``---NAME---`` line."""
    services, name, lines = {}, None, []
    for line in output.splitlines():
        if line.startswith("---") and line.endswith("---") and len(line) > 6:
            if name:
                services[name] = "\n".join(lines)
            name, lines = line.strip("-"), []
        else:
            lines.append(line)
    if name:
        services[name] = "\n".join(lines)
    return services


def start_order(services: dict[str, Service], target: str, *, check: bool = True) -> list[str]:
    """What ``systemctl start target`` starts, in an order that honours After= (Requires=
    pulls units in; the target's own WantedBy= members too). A required unit that does not
    exist fails the start, as with systemd, unless ``check`` is false (stopping)."""
    wanted: list[str] = []

    def pull(name: str) -> None:
        if name in wanted or name not in services:
            return
        wanted.append(name)
        for dep in services[name].deps("Requires"):
            if check and dep not in services:  # systemd fails the start job, so does this
                raise UnitError(f"{name} requires {dep}: Unit {dep} not found.")
            pull(dep)
        for dep in services[name].deps("Wants"):  # a missing wanted unit is no failure
            pull(dep)

    pull(target)
    for name, svc in services.items():
        if target in svc.wanted_by:
            pull(name)
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...] = ()) -> None:
        if name in ordered:
            return
        if name in path:
            raise UnitError(f"ordering cycle: {' -> '.join(path + (name,))}")
        for dep in services[name].deps("After"):
            if dep in wanted:
                visit(dep, path + (name,))
        ordered.append(name)

    for name in wanted:
        visit(name)
    return [n for n in ordered if services[n].kind != "target"]


# -- running them without systemd -------------------------------------------------------------

def runnable(svc: Service) -> list[str]:
    """The generated command line, minus what only systemd provides: the cid file under %t,
    the split cgroup and conmon's sd_notify; %N (the unit's name) filled in; and, with no
    journal on this machine, podman's own log files instead of journald."""
    journal = Path("/run/systemd/journal/socket").exists()
    out: list[str] = []
    for arg in svc.argv:
        if arg.startswith(("--cidfile=", "--cgroups=split", "--sdnotify=")):
            continue
        if arg == "journald" and out[-1:] == ["--log-driver"] and not journal:
            arg = "k8s-file"
        out.append(arg.replace("%N", svc.name.rsplit(".", 1)[0]))
    return out


class Systemctl:
    """The part of systemctl the deployment guide uses, over the generated services."""

    def __init__(self, unit_dir: Path, system_dir: Path, state_dir: Path, log=print):
        self.services = generate(unit_dir, system_dir, find_generator())
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.log = log

    def active(self, name: str) -> bool:
        svc = self.services[name]
        if svc.kind == "container" and not svc.oneshot:
            return subprocess.run([PODMAN, "container", "exists", svc.container]).returncode == 0
        if svc.kind in ("network", "volume"):  # what they create is what is there
            return subprocess.run([PODMAN, svc.kind, "exists", svc.argv[-1]]).returncode == 0
        return (self.state / name).exists()

    def start(self, unit: str) -> None:
        for name in start_order(self.services, unit):
            if not self.active(name):
                self._run(self.services[name])
        if self.services[unit].kind == "target":
            (self.state / unit).touch()

    def _run(self, svc: Service) -> None:
        argv = runnable(svc)
        if svc.kind in ("network", "volume"):
            # `create --ignore` (an existing one is fine) is newer than podman 4.3: the same
            # by asking first.
            argv.remove("--ignore")
            if subprocess.run([PODMAN, svc.kind, "exists", argv[-1]]).returncode == 0:
                return
        self.log(f"Starting {svc.name}: {shlex.join(argv)}")
        done = subprocess.run(argv, capture_output=True, text=True)
        for line in (done.stdout + done.stderr).splitlines():
            # podman schedules health checks with systemd timers; without systemd it says so
            # for every container (`podman healthcheck run` still runs them).
            if "unable to get systemd connection" not in line:
                self.log(f"{svc.name}: {line}")
        if done.returncode != 0:
            raise SystemExit(f"Job for {svc.name} failed (exit status {done.returncode})")
        if svc.oneshot:
            (self.state / svc.name).touch()

    def stop(self, unit: str) -> None:
        svc = self.services[unit]
        members = [unit] if svc.kind != "target" else [
            n for n, s in self.services.items() if unit in s.deps("PartOf")]
        for name in reversed(start_order(self.services, unit, check=False)
                             if svc.kind == "target" else members):
            member = self.services[name]
            if name not in members or member.kind != "container":
                continue
            subprocess.run([PODMAN, "rm", "-f", "-i", "-t", "30", member.container],
                           capture_output=True)
            (self.state / name).unlink(missing_ok=True)
        (self.state / unit).unlink(missing_ok=True)

    def restart(self, unit: str) -> None:
        """PartOf= members restart with the target; a restarted unit's oneshot requirements
        run again only when the target restarts (as systemd does with RemainAfterExit)."""
        self.stop(unit)
        self.start(unit)


def main(argv: list[str]) -> int:
    unit_dir = Path(os.environ.get("QUADLET_UNIT_DIR", "/etc/containers/systemd"))
    system_dir = Path(os.environ.get("SYSTEMD_UNIT_DIR", "/etc/systemd/system"))
    state = Path(os.environ.get("SYSTEMCTL_STATE_DIR", "/run/flightctl-systemctl-standin"))
    if not argv:
        print("usage: systemctl daemon-reload|start|stop|restart|is-active|cat UNIT...",
              file=sys.stderr)
        return 2
    command, names = argv[0], [u if "." in u else f"{u}.service" for u in argv[1:]]
    try:
        ctl = Systemctl(unit_dir, system_dir, state, log=lambda text: print(text, file=sys.stderr))
    except UnitError as exc:
        print(f"quadlet: {exc}", file=sys.stderr)
        return 1
    if command == "daemon-reload":
        return 0
    for unit in names:
        if unit not in ctl.services:
            print(f"Unit {unit} not found.", file=sys.stderr)
            return 5
        if command == "is-active":
            active = ctl.active(unit)
            print("active" if active else "inactive")
            if not active:
                return 3
        elif command == "cat":  # the service file, as the generator writes it
            print(f"# {unit}\n{ctl.services[unit].text()}")
        elif command in ("start", "stop", "restart"):
            try:
                getattr(ctl, command)(unit)
            except UnitError as exc:
                print(f"Failed to {command} {unit}: {exc}", file=sys.stderr)
                return 1
        else:
            print(f"systemctl stand-in: unsupported command {command}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
