"""Quadlet units turned into the systemd services podman's generator makes of them, and a
stand-in ``systemctl`` that starts those services' containers the way systemd would.

Podman's quadlet generator (``/usr/libexec/podman/quadlet``) ships with podman 4.4 and newer;
this machine's podman is 4.3 and has none, and systemd is not PID 1 here. So where the generator
is missing, each unit is converted here by the key mapping of podman-systemd.unit(5), for
exactly the keys deploy/quadlets/ uses: a key not in ``KNOWN_KEYS`` is an error, so the units
cannot drift into something neither this code nor the test checks. Where the generator exists,
its ``-dryrun`` output is used instead.

Run as ``python -m tests.deploy.quadlet COMMAND ...``: the ``systemctl`` stand-in of the
deployment test (daemon-reload, start, stop, restart, is-active; units from
``$QUADLET_UNIT_DIR``, default /etc/containers/systemd).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PODMAN = "/usr/bin/podman"
GENERATOR = Path("/usr/libexec/podman/quadlet")
UNIT_SUFFIXES = (".container", ".volume", ".network", ".target")

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


class UnitError(ValueError):
    """A unit file quadlet would reject or that uses a key this converter does not know."""


def parse(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in file order; keys may repeat (Volume=, Environment=, ...)."""
    entries, section = [], None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep or section is None:
            raise UnitError(f"{path.name}:{number}: not a key=value line in a section: {raw}")
        entries.append((section, key.strip(), value.strip()))
    return entries


@dataclass
class Service:
    """A generated systemd service: its name, dependencies and what it runs."""

    name: str
    source: str
    kind: str  # container, volume, network or target
    argv: list[str] = field(default_factory=list)
    container: str = ""
    unit: dict[str, list[str]] = field(default_factory=dict)
    service: dict[str, str] = field(default_factory=dict)
    wanted_by: list[str] = field(default_factory=list)

    @property
    def oneshot(self) -> bool:
        return self.service.get("Type") == "oneshot"

    def deps(self, key: str) -> list[str]:
        return [name for value in self.unit.get(key, []) for name in value.split()]

    def text(self) -> str:
        """The service file, as the generator would write it (for systemd-analyze verify)."""
        lines = ["[Unit]", f"SourcePath={self.source}"]
        lines += [f"{key}={value}" for key, values in self.unit.items() for value in values]
        if self.kind != "target":
            lines += ["", "[Service]"]
            lines += [f"{key}={value}" for key, value in self.service.items()]
            lines.append("ExecStart=" + shlex.join(self.argv))
            if self.kind == "container":
                lines.append(f"ExecStop={PODMAN} rm -f -i --cidfile=%t/%N.cid")
        if self.wanted_by:
            lines += ["", "[Install]", "WantedBy=" + " ".join(self.wanted_by)]
        return "\n".join(lines) + "\n"


def convert(path: Path) -> Service:
    """The service quadlet generates from the unit at ``path`` (podman-systemd.unit(5))."""
    path = Path(path)
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
    for section, key, value in entries:
        if section == "Unit":
            svc.unit.setdefault(key, []).append(value)
        elif section == "Service":
            svc.service[key] = value
        elif section == "Install":
            svc.wanted_by += value.split()

    def depend(on: str) -> None:
        for key in ("Requires", "After"):
            if on not in svc.deps(key):
                svc.unit.setdefault(key, []).append(on)

    labels = [v for s, k, v in entries if s == own and k == "Label"]
    if suffix == ".network":
        svc.service.update(Type="oneshot", RemainAfterExit="yes")
        svc.argv = [PODMAN, "network", "create", "--ignore",
                    *[f"--label={label}" for label in labels], f"systemd-{stem}"]
    elif suffix == ".volume":
        svc.service.update(Type="oneshot", RemainAfterExit="yes")
        svc.argv = [PODMAN, "volume", "create", "--ignore",
                    *[f"--label={label}" for label in labels], f"systemd-{stem}"]
    elif suffix == ".container":
        values = {}
        options: list[str] = []
        for section, key, value in entries:
            if section != "Container":
                continue
            if key in ("ContainerName", "Image", "Exec", "HealthCmd", "LogDriver"):
                values[key] = value
            elif key == "Network":
                if value.endswith(".network"):
                    depend(f"{value[:-8]}-network.service")
                    value = f"systemd-{value[:-8]}"
                options.append(f"--network={value}")
            elif key == "Volume":
                source, sep, rest = value.partition(":")
                if source.endswith(".volume"):
                    depend(f"{source[:-7]}-volume.service")
                    source = f"systemd-{source[:-7]}"
                options += ["-v", source + sep + rest]
            elif key == "PublishPort":
                options += ["--publish", value]
            elif key == "Environment":
                options += [f"--env={pair}" for pair in shlex.split(value)]
            elif key == "Secret":
                options += ["--secret", value]
            elif key == "Label":
                options += ["--label", value]
        if "Image" not in values:
            raise UnitError(f"{path.name}: [Container] has no Image=")
        svc.container = values.get("ContainerName", f"systemd-{stem}")
        svc.service.setdefault("Environment", "PODMAN_SYSTEMD_UNIT=%n")
        svc.service.setdefault("KillMode", "mixed")
        if not svc.oneshot:
            svc.service.setdefault("Type", "notify")
            svc.service.setdefault("NotifyAccess", "all")
        svc.argv = [PODMAN, "run", f"--name={svc.container}", "--cidfile=%t/%N.cid",
                    "--replace", "--rm", "--cgroups=split", "--sdnotify=conmon",
                    *([] if svc.oneshot else ["-d"])]
        if "LogDriver" in values:
            svc.argv.append(f"--log-driver={values['LogDriver']}")
        if "HealthCmd" in values:
            svc.argv.append(f"--health-cmd={values['HealthCmd']}")
        svc.argv += options + [values["Image"], *shlex.split(values.get("Exec", ""))]
    return svc


def generate(unit_dir: Path) -> dict[str, Service]:
    """Every service of ``unit_dir``: from the real generator when it is installed (its
    ``-dryrun`` output, to check that it accepts our units), else by :func:`convert`."""
    services = {s.name: s for s in map(convert, sorted(
        p for p in Path(unit_dir).iterdir() if p.suffix in UNIT_SUFFIXES))}
    if GENERATOR.exists():
        dry = subprocess.run([str(GENERATOR), "-dryrun"], capture_output=True, text=True,
                             env={**os.environ, "QUADLET_UNIT_DIRS": str(unit_dir)})
        if dry.returncode != 0 or "error" in dry.stderr.lower():
            raise UnitError(f"quadlet -dryrun rejected the units: {dry.stderr.strip()}")
        for name, text in _dryrun_services(dry.stdout).items():
            for line in text.splitlines():
                if line.startswith("ExecStart=") and name in services:
                    services[name].argv = shlex.split(line[len("ExecStart="):])
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


def start_order(services: dict[str, Service], target: str) -> list[str]:
    """What ``systemctl start target`` starts, in an order that honours After= (Requires=
    pulls units in; the target's own WantedBy= members too)."""
    wanted: list[str] = []

    def pull(name: str) -> None:
        if name in wanted or name not in services:
            return
        wanted.append(name)
        for dep in services[name].deps("Requires") + services[name].deps("Wants"):
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

def runnable(argv: list[str]) -> list[str]:
    """The generated command line, minus what only systemd provides: the cid file under %t,
    the split cgroup and conmon's sd_notify; and, with no journal on this machine, podman's
    own log files instead of journald."""
    journal = Path("/run/systemd/journal/socket").exists()
    out = []
    for arg in argv:
        if arg.startswith(("--cidfile=", "--cgroups=split", "--sdnotify=")):
            continue
        if arg == "--log-driver=journald" and not journal:
            arg = "--log-driver=k8s-file"
        out.append(arg)
    return out


class Systemctl:
    """The part of systemctl the deployment guide uses, over the generated services."""

    def __init__(self, unit_dir: Path, state_dir: Path, log=print):
        self.services = generate(unit_dir)
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
        argv = runnable(svc.argv)
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
        for name in reversed(start_order(self.services, unit) if svc.kind == "target"
                             else members):
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
    state = Path(os.environ.get("SYSTEMCTL_STATE_DIR", "/run/flightctl-systemctl-standin"))
    if not argv:
        print("usage: systemctl daemon-reload|start|stop|restart|is-active UNIT...",
              file=sys.stderr)
        return 2
    command, units = argv[0], [u if "." in u else f"{u}.service" for u in argv[1:]]
    try:
        ctl = Systemctl(unit_dir, state, log=lambda text: print(text, file=sys.stderr))
    except UnitError as exc:
        print(f"quadlet: {exc}", file=sys.stderr)
        return 1
    if command == "daemon-reload":
        return 0
    for unit in units:
        if unit not in ctl.services:
            print(f"Unit {unit} not found.", file=sys.stderr)
            return 5
        if command == "is-active":
            active = ctl.active(unit)
            print("active" if active else "inactive")
            if not active:
                return 3
        elif command in ("start", "stop", "restart"):
            getattr(ctl, command)(unit)
        else:
            print(f"systemctl stand-in: unsupported command {command}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
