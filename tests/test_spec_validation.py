"""Scenarios for hand-written DeviceSpec, DeviceStatus and FleetSpec validation.

Pure Python: no database, no Django settings. Error fragments asserted here are the ones the
reference's clients and e2e tests look for (api.md §3, agent.md §8.2, §10.3, §10.4). Most
rules are exercised through scenario tables: each entry names the situation, the spec and the
fragments one reported error must contain.
"""

from __future__ import annotations

import base64
import copy
import glob
import os

import pytest
import yaml

from devices.validation import (
    FORBIDDEN_DEVICE_PATH_ROOTS,
    validate_device_spec,
    validate_device_status,
)
from fleets.validation import validate_fleet_spec, validate_label_selector
from flightctl.api.validation import Errors

EXAMPLES = "/work/shared/reference/examples"
LABEL = "{{ .metadata.labels.site }}"
COMPOSE = "services:\n  web:\n    image: quay.io/org/web:v1\n"
CONTAINER_UNIT = "[Container]\nImage=quay.io/org/app:v1\nVolume=data.volume:/data\n"
VM_YAML = "apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: vm1\n"
REF = {"catalog": "c", "item": "i", "version": "1"}


# -- helpers -----------------------------------------------------------------------------------


def spec_errors(spec, *, fleet_template: bool = False) -> list[str]:
    errors = Errors()
    validate_device_spec(spec, errors, fleet_template=fleet_template)
    return errors.messages


def assert_valid(spec, **kwargs) -> None:
    assert spec_errors(spec, **kwargs) == []


def assert_rejected(spec, *fragments: str, **kwargs) -> list[str]:
    messages = spec_errors(spec, **kwargs)
    assert any(all(f in m for f in fragments) for m in messages), messages
    return messages


def fleet_errors(spec) -> list[str]:
    errors = Errors()
    validate_fleet_spec(spec, errors)
    return errors.messages


def assert_fleet_rejected(spec, *fragments: str) -> None:
    messages = fleet_errors(spec)
    assert any(all(f in m for f in fragments) for m in messages), messages


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def without_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def inline_file(path="/etc/motd", content="hello", **extra) -> dict:
    return {"path": path, "content": content, **extra}


def inline_config(*files, name="motd") -> dict:
    return {"config": [{"name": name, "inline": list(files) or [inline_file()]}]}


def http_config(file_path="/etc/app.conf", **extra) -> dict:
    return {"config": [{"name": "h", "httpRef": {"repository": "r", "filePath": file_path,
                                                 **extra}}]}


def app_spec(**fields) -> dict:
    app = {"name": "web", "appType": "container", "image": "quay.io/org/api:v1", **fields}
    return {"applications": [without_none(app)]}


def inline_app(app_type, *files, name="stack", **fields) -> dict:
    app = {"name": name, "appType": app_type, "inline": list(files), **fields}
    return {"applications": [without_none(app)]}


def compose_app(*files, name="stack") -> dict:
    files = files or ({"path": "podman-compose.yaml", "content": COMPOSE},)
    return inline_app("compose", *files, name=name)


def rule(severity="Warning", duration="10m", percentage=80, description="hot") -> dict:
    return {"severity": severity, "duration": duration, "percentage": percentage,
            "description": description}


def monitor(**fields) -> dict:
    base = {"monitorType": "CPU", "samplingInterval": "30s", "alertRules": [rule()], **fields}
    return {"resources": [without_none(base)]}


def schedule(**fields) -> dict:
    base = {"at": "0 4 * * 1", "timeZone": "America/New_York", "startGraceDuration": "1h",
            **fields}
    return {"updatePolicy": {"updateSchedule": without_none(base)}}


def fleet(template_spec=None, **fields) -> dict:
    return {
        "selector": {"matchLabels": {"fleet": "pos"}},
        "template": {"metadata": {"labels": {"fleet": "pos"}}, "spec": template_spec or {}},
        **fields,
    }


def scenarios(table: dict):
    """Parametrize a test over a {scenario name: (spec, fragments...)} table."""
    return pytest.mark.parametrize("case", list(table.values()), ids=list(table))


# -- reference examples ------------------------------------------------------------------------


def _example_manifests() -> list[str]:
    patterns = ("device*.yaml", "fleet*.yaml")
    return sorted(p for pattern in patterns for p in glob.glob(os.path.join(EXAMPLES, pattern)))


@pytest.mark.parametrize("manifest", _example_manifests(), ids=os.path.basename)
def test_every_reference_example_manifest_validates_cleanly(manifest):
    with open(manifest) as handle:
        document = yaml.safe_load(handle)
    errors = Errors()
    if document["kind"] == "Device":
        if document.get("spec") is not None:
            validate_device_spec(document["spec"], errors)
    else:
        validate_fleet_spec(document["spec"], errors)
    assert errors.messages == []


def test_reference_examples_are_present():
    assert len(_example_manifests()) >= 8


# -- valid device specs ------------------------------------------------------------------------

VALID_SPECS = {
    "empty spec": {},
    "os image": {"os": {"image": "quay.io/flightctl/rhel:9.5"}},
    "os image without registry": {"os": {"image": "rhel"}},
    "os image by digest": {"os": {"image": "reg:5000/a/b@sha256:" + "a" * 64}},
    "os catalog item": {"os": {"catalogItemRef": REF}},
    "inline file with octal mode and owner": inline_config(
        inline_file(mode=0o644, user="user", group="1000")),
    "mode with special bits": inline_config(inline_file(mode=0o7777)),
    "base64 content": inline_config(inline_file(content=b64("hi"), contentEncoding="base64")),
    "content of exactly 1 MiB": inline_config(inline_file(content="x" * 1024 * 1024)),
    "app config outside agent roots": inline_config(inline_file("/etc/myapp/config.yaml")),
    "hook file under /etc/flightctl": inline_config(
        inline_file("/etc/flightctl/hooks.d/afterupdating/h.yaml")),
    "path sharing a prefix with an agent root": inline_config(inline_file("/var/lib/flightctl2/x")),
    "http provider with suffix": http_config(suffix="/a?b=c"),
    "container app with ports, limits and volumes": app_spec(
        ports=["8080:80"], runAs="flightctl", envVars={"A_1": "x"},
        resources={"limits": {"cpu": "0.5", "memory": "256m"}},
        volumes=[{"name": "conf", "mount": {"path": "/etc/nginx/conf.d:ro"},
                  "image": {"reference": "quay.io/org/conf:v1", "pullPolicy": "Always"}},
                 {"name": "logs", "mount": {"path": "/var/log/nginx"}}]),
    "quadlet app with image volume": app_spec(
        appType="quadlet", volumes=[{"name": "m", "image": {"reference": "quay.io/org/m:v1"}}]),
    "image app without name": {"applications": [{"appType": "compose", "image": "quay.io/o/a:1"}]},
    "helm app": app_spec(appType="helm", namespace="apps", values={"replicas": 2},
                         valuesFiles=["values-prod.yaml"]),
    "inline compose with override": compose_app(
        {"path": "podman-compose.yaml", "content": COMPOSE},
        {"path": "podman-compose.override.yaml", "content": COMPOSE}),
    "inline quadlet with extra files": inline_app(
        "quadlet", {"path": "app.container", "content": CONTAINER_UNIT},
        {"path": "data.volume", "content": "[Volume]\nDriver=local\n"},
        {"path": "README.md", "content": "docs"}),
    "inline vm": inline_app("vm", {"path": "vm.yaml", "content": VM_YAML}, name="vm1",
                            publishPorts=["2222:22/tcp"]),
    "systemd units and globs": {"systemd": {"matchPatterns": [
        "chronyd.service", "podman*.service", "getty@tty1.service"]}},
    "cpu monitor": monitor(),
    "disk monitor": monitor(monitorType="Disk", path="/var"),
    "update schedule": schedule(),
    "download schedule in local time": {"updatePolicy": {"downloadSchedule": {
        "at": "*/30 * * * *", "startGraceDuration": "10m"}}},
    "grace equal to cron interval": schedule(at="*/15 * * * *", startGraceDuration="15m"),
    "grace as composite go duration": schedule(at="0 4 * * *", startGraceDuration="1h30m"),
    **{f"time zone {zone}": schedule(timeZone=zone)
       for zone in ("GMT", "UTC", "Local", "Europe/Berlin")},
    "server-rendered consoles and decommissioning": {
        "consoles": [{"sessionID": "s", "sessionMetadata": "{}"}],
        "decommissioning": {"target": "Unenroll"}},
    "placeholder text in a device is literal": inline_config(
        inline_file(content="hi {{ .metadata.name }}")),
}


@pytest.mark.parametrize("spec", list(VALID_SPECS.values()), ids=list(VALID_SPECS))
def test_valid_device_spec_is_accepted(spec):
    assert_valid(spec)


def test_forbidden_roots_are_exported():
    assert set(FORBIDDEN_DEVICE_PATH_ROOTS) == {
        "/var/lib/flightctl", "/usr/lib/flightctl", "/etc/flightctl/certs",
    }


# -- rejected device specs ---------------------------------------------------------------------

SHAPE_AND_OS = {
    "spec that is not an object": (["os"], "spec: Invalid value", "must be an object"),
    "unknown spec field": ({"hooks": []}, "spec: Invalid value", 'unknown field "hooks"'),
    "os image and catalog item together": (
        {"os": {"image": "quay.io/a/b:1", "catalogItemRef": REF}}, "spec.os: Invalid value"),
    "os catalog item without version": (
        {"os": {"catalogItemRef": {"catalog": "c", "item": "i"}}},
        "spec.os.catalogItemRef.version: Required value"),
    "os image with spaces": ({"os": {"image": "quay.io/Org/Bad Image"}}, "spec.os.image"),
    "os image empty": ({"os": {"image": ""}}, "spec.os.image: Required value"),
    "os image with two tags": ({"os": {"image": "quay.io/a:b:c"}}, "spec.os.image"),
    "placeholder in a device os image": (
        {"os": {"image": "quay.io/org/os:" + LABEL}}, "spec.os.image: Invalid value"),
}

CONFIG = {
    "provider without name": (
        {"config": [{"inline": [inline_file()]}]}, "spec.config[0].name: Invalid value"),
    "provider with bad name": (inline_config(name="Bad_Name"), "config[0].name: Invalid value"),
    "duplicate provider names": (
        {"config": [{"name": "a", "inline": [inline_file("/a")]},
                    {"name": "a", "inline": [inline_file("/b")]}]},
        "spec.config[1].name", "must be unique"),
    "provider without kind": ({"config": [{"name": "x"}]}, "spec.config[0]: Required value"),
    "provider with two kinds": (
        {"config": [{"name": "x", "inline": [inline_file()], "gitRef": {}}]},
        "spec.config[0]: Invalid value", "exactly one of"),
    "relative inline path": (
        inline_config(inline_file("etc/motd")),
        'spec.config[0].inline[0].path: Invalid value: "etc/motd": must be an absolute path'),
    "inline file without path": (inline_config({"content": "x"}), "inline[0].path: Invalid value"),
    "path with colon": (inline_config(inline_file("/etc/a:b")), "must not contain ':'"),
    "path with double slash": (inline_config(inline_file("/etc//motd")), "must be clean"),
    **{f"agent config file {path}": (
        inline_config(inline_file(path)), "forbidden device path",
        "writing agent config file is not allowed")
       for path in ("/etc/flightctl/config.yaml", "/etc/flightctl/config.yml")},
    **{f"file under {root}": (
        inline_config(inline_file(path)), "forbidden device path",
        f'writing under "{root}" is not allowed')
       for path, root in (("/etc/flightctl/certs/agent.crt", "/etc/flightctl/certs"),
                          ("/var/lib/flightctl/enrollment.json", "/var/lib/flightctl"),
                          ("/usr/lib/flightctl/data", "/usr/lib/flightctl"),
                          ("/var/lib/flightctl", "/var/lib/flightctl"))},
    **{f"mode {mode!r}": (inline_config(inline_file(mode=mode)), "mode: Invalid value")
       for mode in (9999, -1, "0644", 1.5, True)},
    "unknown content encoding": (
        inline_config(inline_file(contentEncoding="gzip")), "contentEncoding: Unsupported value"),
    "content that is not base64": (
        inline_config(inline_file(content="Not encoded string", contentEncoding="base64")),
        "content: Invalid value", "decode base64 content: illegal base64 data"),
    "plain content above 1 MiB": (
        inline_config(inline_file(content="x" * (1024 * 1024 + 1))), "content: Too long"),
    "decoded content above 1 MiB": (
        inline_config(inline_file(content=b64("x" * (1024 * 1024 + 1)),
                                  contentEncoding="base64")), "content: Too long"),
    **{f"file owner {user!r}": (inline_config(inline_file(user=user)), "inline[0].user")
       for user in ("bad user!", "65535", "-1", "a" * 33)},
    "same path in inline and http providers": (
        {"config": [inline_config(inline_file("/etc/app.conf"))["config"][0],
                    http_config()["config"][0]]},
        "spec.config[1].httpRef.filePath", "must be unique"),
    "same path twice in one provider": (
        inline_config(inline_file(), inline_file()), "inline[1].path", "must be unique"),
    "git provider without fields": (
        {"config": [{"name": "g", "gitRef": {}}]}, "gitRef.targetRevision: Required value"),
    "git revision too long": (
        {"config": [{"name": "g", "gitRef": {"repository": "r", "targetRevision": "r" * 1025,
                                             "path": "/"}}]}, "targetRevision: Too long"),
    "git path too long": (
        {"config": [{"name": "g", "gitRef": {"repository": "r", "targetRevision": "main",
                                             "path": "/" + "p" * 2048}}]}, "gitRef.path: Too long"),
    "relative http file path": (http_config("etc/app.conf"), "filePath", "must be an absolute"),
    "http file under agent root": (http_config("/var/lib/flightctl/x"), "forbidden device path"),
    "http provider without repository": (
        {"config": [{"name": "h", "httpRef": {"filePath": "/a"}}]},
        "httpRef.repository: Required value"),
    "secret provider without fields": (
        {"config": [{"name": "s", "secretRef": {}}]}, "secretRef.name: Required value"),
    "secret with relative mount path": (
        {"config": [{"name": "s", "secretRef": {"name": "s", "namespace": "ns",
                                                "mountPath": "etc/x"}}]},
        "secretRef.mountPath", "must be an absolute path"),
}

APPLICATIONS = {
    "app without appType": (app_spec(appType=None), "appType: Required value"),
    "unknown appType": (app_spec(appType="docker"), "appType: Unsupported value"),
    "duplicate app names": (
        {"applications": app_spec()["applications"] * 2}, "applications[1].name", "duplicate"),
    "duplicate image-named apps": (
        {"applications": [{"appType": "compose", "image": "quay.io/o/a:1"}] * 2},
        "duplicate application name"),
    "app name with spaces": (app_spec(name="Web App"), "applications[0].name: Invalid value"),
    "inline app without name": (compose_app(name=None), "applications[0].name: Required value"),
    "app without source": (app_spec(image=None), "spec.applications[0]: Required value"),
    "app with two sources": (app_spec(catalogItemRef=REF), "spec.applications[0]: Invalid value"),
    "inline container app": (
        app_spec(image=None, inline=[{"path": "a"}]), "applications[0].inline: Forbidden"),
    "inline helm app": (
        app_spec(appType="helm", image=None, inline=[{"path": "a"}]), "inline: Forbidden"),
    "vm app from catalog": (
        app_spec(appType="vm", image=None, catalogItemRef=REF), "catalogItemRef: Forbidden"),
    "client-set desiredState": (app_spec(desiredState="stopped"), "desiredState: Forbidden"),
    "client-set restartGeneration": (app_spec(restartGeneration=1), "restartGeneration: Forbidden"),
    **{f"{field} on {app_type}": (
        app_spec(appType=app_type, **{field: value}), f"[0].{field}: Forbidden",
        "can only be defined")
       for app_type, field, value in (
           ("compose", "ports", ["80:80"]), ("compose", "runAs", "x"),
           ("helm", "envVars", {"A": "b"}), ("container", "namespace", "ns"),
           ("quadlet", "publishPorts", ["1:1"]), ("vm", "volumes", []))},
    **{f"env var name {key!r}": (app_spec(envVars={key: "test"}), "envVars: Invalid value")
       for key in ("-1", "!", "1ABC", "")},
    "empty env var value": (app_spec(envVars={"A": ""}), "envVars: Invalid value"),
    "numeric env var value": (app_spec(envVars={"A": 1}), "envVars: Invalid value"),
    **{f"port {port!r}": (app_spec(ports=[port]), "ports[0]: Invalid value")
       for port in ("80", "0:80", "70000:80", "a:b", 8080)},
    **{f"limits {limits}": (app_spec(resources={"limits": limits}), "resources.limits")
       for limits in ({"cpu": "-1"}, {"cpu": "abc"}, {"cpu": 1}, {"memory": "1Gi"},
                      {"memory": "m"})},
    "duplicate volume names": (
        app_spec(volumes=[{"name": "d", "mount": {"path": "/d"}}] * 2),
        "volumes[1].name", "duplicate volume name"),
    "volume name not a DNS label": (
        app_spec(volumes=[{"name": "Data_1", "mount": {"path": "/d"}}]),
        "volumes[0].name: Invalid value"),
    "image volume on a container app": (
        app_spec(volumes=[{"name": "m", "image": {"reference": "quay.io/o/m:1"}}]),
        "volumes[0]", "not supported"),
    "mount volume on a compose app": (
        app_spec(appType="compose", volumes=[{"name": "m", "mount": {"path": "/m"}}]),
        "volumes[0]", "not supported"),
    "volume without image or mount": (app_spec(volumes=[{"name": "m"}]), "volumes[0]: Required"),
    "volume reclaim policy Delete": (
        app_spec(volumes=[{"name": "m", "reclaimPolicy": "Delete", "mount": {"path": "/m"}}]),
        "reclaimPolicy: Unsupported value"),
    "relative mount path": (
        app_spec(volumes=[{"name": "m", "mount": {"path": "m:ro"}}]),
        "mount.path", "must be an absolute path"),
    "image volume with reference and catalog item": (
        app_spec(appType="quadlet", volumes=[{"name": "m", "image": {
            "reference": "quay.io/a/b:1", "catalogItemRef": REF}}]),
        "volumes[0].image: Invalid value"),
    "unknown pull policy": (
        app_spec(appType="quadlet", volumes=[{"name": "m", "image": {
            "reference": "quay.io/a/b:1", "pullPolicy": "Sometimes"}}]),
        "pullPolicy: Unsupported value"),
    "catalog app ref without version": (
        app_spec(image=None, catalogItemRef={"catalog": "c", "item": "i"}),
        "version: Required value"),
    "catalog app ref with unknown field": (
        app_spec(image=None, catalogItemRef={**REF, "flavour": "x"}), 'unknown field "flavour"'),
    "helm namespace not a DNS label": (
        app_spec(appType="helm", namespace="Bad_NS"), "namespace: Invalid value"),
    "absolute helm values file": (
        app_spec(appType="helm", valuesFiles=["/abs.yaml"]), "must be a relative path"),
    "helm values that are not an object": (
        app_spec(appType="helm", values=["a"]), "values: Invalid value"),
}

INLINE_PACKAGES = {
    "compose path without yaml extension": (
        compose_app({"path": "test-app", "content": COMPOSE}),
        "compose path must have .yaml or .yml extension"),
    "compose file in a sub-directory": (
        compose_app({"path": "sub/docker-compose.yaml", "content": COMPOSE}), "root level"),
    "unknown compose file name": (
        compose_app({"path": "compose.yaml", "content": COMPOSE}), "invalid compose path"),
    "compose override without base": (
        compose_app({"path": "docker-compose.override.yaml", "content": COMPOSE}),
        "requires a base path"),
    "compose without services": (
        compose_app({"path": "docker-compose.yaml", "content": COMPOSE.replace("services", "x")}),
        "compose spec has no services"),
    "compose with duplicate services": (
        compose_app({"path": "docker-compose.yaml",
                     "content": COMPOSE + "  web:\n    image: quay.io/org/other:v1\n"}),
        "invalid compose YAML"),
    "compose that is not YAML": (
        compose_app({"path": "docker-compose.yaml", "content": "a: [b"}), "invalid compose YAML"),
    "compose service with container_name": (
        compose_app({"path": "docker-compose.yaml",
                     "content": COMPOSE + "    container_name: fixed\n"}),
        "hardcoded container_name"),
    "compose service without image": (
        compose_app({"path": "docker-compose.yaml", "content": "services:\n  db: {}\n"}),
        "service db is missing an image"),
    "app content that is not base64": (
        compose_app({"path": "Chart.yaml", "content": "Not encoded string",
                     "contentEncoding": "base64"}),
        "decode base64 content: illegal base64 data"),
    "absolute app content path": (
        compose_app({"path": "/docker-compose.yaml", "content": COMPOSE}),
        "must be a relative path"),
    "app content path leaving the app": (
        compose_app({"path": "../docker-compose.yaml", "content": COMPOSE}),
        "must not contain '..'"),
    "duplicate app content path": (
        compose_app(*[{"path": "docker-compose.yaml", "content": COMPOSE}] * 2),
        "duplicate inline path"),
    "quadlet build file": (inline_app("quadlet", {"path": "a.build", "content": ""}), ".build"),
    "quadlet volumes sharing a VolumeName": (
        inline_app("quadlet", *[{"path": f"{n}.volume", "content": "[Volume]\nVolumeName=v\n"}
                                for n in "ab"]),
        "duplicate VolumeName"),
    "quadlet container without image": (
        inline_app("quadlet", {"path": "a.container", "content": "[Container]\nExec=x\n"}),
        "must define Image"),
    "quadlet reference to a missing unit": (
        inline_app("quadlet", {"path": "a.container", "content": "[Container]\nImage=b.image\n"}),
        "not defined"),
    "quadlet unit without section": (
        inline_app("quadlet", {"path": "a.container", "content": "Image=x\n"}),
        "parse quadlet spec"),
    "quadlet app without quadlet files": (
        inline_app("quadlet", {"path": "notes.txt", "content": "x"}), "no quadlet files"),
    "vm without vm.yaml": (
        inline_app("vm", {"path": "other.yaml", "content": VM_YAML}, name="vm1"),
        'named "vm.yaml"'),
    "vm manifest of another kind": (
        inline_app("vm", {"path": "vm.yaml", "content": VM_YAML.replace("VirtualMachine", "Pod")},
                   name="vm1"),
        "kind must be"),
    "vm manifest named differently": (
        inline_app("vm", {"path": "vm.yaml", "content": VM_YAML}, name="vm2"),
        "must match the application name"),
    "vm publish port with unknown protocol": (
        inline_app("vm", {"path": "vm.yaml", "content": VM_YAML}, name="vm1",
                   publishPorts=["22:22/icmp"]),
        "publishPorts[0]: Invalid value"),
}

SYSTEMD_MONITORS_SCHEDULES = {
    "systemd pattern with space": (
        {"systemd": {"matchPatterns": ["bad unit"]}}, "matchPatterns[0]: Invalid value"),
    "systemd pattern too long": (
        {"systemd": {"matchPatterns": ["a" * 257]}}, "matchPatterns[0]: Too long"),
    "unknown systemd field": ({"systemd": {"units": []}}, 'unknown field "units"'),
    "duplicate monitor type": (
        {"resources": monitor()["resources"] * 2}, "duplicate monitorType in resources: CPU"),
    "unknown monitor type": (monitor(monitorType="GPU"), "monitorType: Unsupported value"),
    **{f"sampling interval {value!r}": (
        monitor(samplingInterval=value), "samplingInterval: Invalid value")
       for value in ("0s", "5", "1d", "05s")},
    "duplicate alert severity": (
        monitor(alertRules=[rule("Critical", percentage=90), rule("Critical", percentage=95)]),
        "duplicate alertRule severity: Critical"),
    "sampling 5s over 1s": (
        monitor(samplingInterval="5s", alertRules=[rule(duration="1s")]),
        "sampling interval 5s must be less than the duration: 1s"),
    "sampling 1m over 30s": (
        monitor(samplingInterval="1m", alertRules=[rule(duration="30s")]),
        "sampling interval 1m0s must be less than the duration: 30s"),
    **{f"alert percentage {value!r}": (
        monitor(alertRules=[rule(percentage=value)]), "percentage: Invalid value")
       for value in (101, -1, "80", True)},
    "alert rule without duration": (
        monitor(alertRules=[{"severity": "Info", "percentage": 1, "description": "d"}]),
        "alertRules[0].duration: Required value"),
    "alert rule without description": (
        monitor(alertRules=[rule(description=None)]), "description: Required value"),
    "alert description too long": (
        monitor(alertRules=[rule(description="d" * 257)]), "description: Too long"),
    "monitor without alert rules": (monitor(alertRules=None), "alertRules: Required value"),
    "info above warning": (
        monitor(alertRules=[rule("Info", percentage=90), rule("Warning", percentage=80)]),
        "info alert percentage must be less than warning"),
    "warning above critical": (
        monitor(alertRules=[rule("Warning", percentage=95), rule("Critical", percentage=90)]),
        "warning alert percentage must be less than critical"),
    "disk monitor without path": (monitor(monitorType="Disk"), "path: Required value"),
    "cpu monitor with path": (monitor(path="/"), "path: Forbidden", "CPU monitors cannot"),
    "memory monitor with path": (
        monitor(monitorType="Memory", path="/"), "Memory monitors cannot have a path"),
    **{f"time zone {zone!r}": (schedule(timeZone=zone), "timeZone: Invalid value")
       for zone in ("EST", "Mars/Olympus", "", "../etc/passwd", "Europe/Berlin1234567")},
    **{f"cron {at!r}": (schedule(at=at), "updateSchedule.at: Invalid value",
                        "invalid cron schedule")
       for at in ("61 * * * *", "* * * *", "0 0 * * * *", "@daily", "a b c d e")},
    "schedule without at": (schedule(at=None), "updateSchedule.at: Required value"),
    "schedule without grace": (
        schedule(startGraceDuration=None), "startGraceDuration: Required value"),
    "grace that is not a duration": (
        schedule(startGraceDuration="soon"), "startGraceDuration: Invalid value"),
    "grace longer than cron interval": (
        schedule(at="*/15 * * * *", startGraceDuration="30m"),
        "startGraceDuration exceeds the cron interval"),
    "unknown update policy field": (
        {"updatePolicy": {"rebootSchedule": {}}}, 'unknown field "rebootSchedule"'),
    "console without session id": (
        {"consoles": [{"sessionMetadata": "{}"}]}, "consoles[0].sessionID: Required"),
    "unknown decommission target": (
        {"decommissioning": {"target": "Explode"}}, "target: Unsupported value"),
}


@scenarios({**SHAPE_AND_OS, **CONFIG, **APPLICATIONS, **INLINE_PACKAGES,
            **SYSTEMD_MONITORS_SCHEDULES})
def test_invalid_device_spec_is_rejected(case):
    spec, *fragments = case
    assert_rejected(spec, *fragments)


def test_git_provider_reports_every_missing_field():
    messages = spec_errors({"config": [{"name": "g", "gitRef": {}}]})
    for field in ("repository", "targetRevision", "path"):
        assert f"spec.config[0].gitRef.{field}: Required value" in messages


def test_alert_escalation_only_flags_the_out_of_order_pairs():
    rules = [rule("Info", percentage=90), rule("Warning", percentage=80),
             rule("Critical", percentage=85)]
    messages = spec_errors(monitor(alertRules=rules))
    assert any("info alert percentage must be less than warning" in m for m in messages)
    assert any("info alert percentage must be less than critical" in m for m in messages)
    assert not any("warning alert percentage" in m for m in messages)


# -- fleet template placeholders ---------------------------------------------------------------


def templated_spec() -> dict:
    return {
        "os": {"image": "quay.io/org/os:" + LABEL},
        "config": [
            {"name": "git", "gitRef": {"repository": "r", "targetRevision": LABEL,
                                       "path": "/cfg/" + LABEL}},
            {"name": "http", "httpRef": {"repository": "r", "suffix": "/" + LABEL,
                                         "filePath": "/srv/" + LABEL}},
            {"name": "inline", "inline": [
                {"path": LABEL, "content": "site " + LABEL},
                {"path": "/etc/b64", "content": b64("hi " + LABEL), "contentEncoding": "base64"},
            ]},
            {"name": "secret", "secretRef": {"name": LABEL, "namespace": LABEL,
                                             "mountPath": LABEL}},
        ],
        "applications": [
            {"name": "web", "appType": "container", "image": "quay.io/org/web:" + LABEL,
             "envVars": {"SITE": LABEL},
             "volumes": [{"name": "v", "mount": {"path": "/v"},
                          "image": {"reference": "quay.io/org/v:" + LABEL}}]},
            {"name": "stack", "appType": "compose", "inline": [
                {"path": "podman-compose.yaml",
                 "content": "services:\n  a:\n    image: quay.io/org/a:" + LABEL + "\n"}]},
        ],
    }


def test_placeholders_are_allowed_in_templatable_fleet_fields():
    assert_valid(templated_spec(), fleet_template=True)


TEMPLATE_ERRORS = {
    "unsupported field in os image": (
        {"os": {"image": "quay.io/org/os:{{ .spec.os }}"}},
        "spec.os.image: Invalid value", "unsupported field"),
    "range in inline content": (
        inline_config(inline_file(content="{{ range .metadata.labels }}x{{ end }}")),
        "inline[0].content: Invalid value"),
    "bad template inside base64 content": (
        inline_config(inline_file(content=b64("{{ .status }}"), contentEncoding="base64")),
        "inline[0].content: Invalid value"),
    "bad reference around a placeholder": (
        {"os": {"image": "quay.io/Bad Org/os:" + LABEL}}, "spec.os.image: Invalid value"),
    "unclosed action in env var": (
        app_spec(envVars={"A": "{{ .metadata.name"}), "envVars.A: Invalid value"),
    **{f"placeholder in {where}": (spec, where, "template placeholders are not allowed")
       for spec, where in (
           (inline_config(name="cfg-" + LABEL), "spec.config[0].name"),
           ({"systemd": {"matchPatterns": [LABEL]}}, "spec.systemd.matchPatterns[0]"),
           (monitor(alertRules=[rule(description=LABEL)]), "alertRules[0].description"),
           ({"config": [{"name": "g", "gitRef": {"repository": LABEL, "targetRevision": "m",
                                                 "path": "/"}}]}, "gitRef.repository"),
           (app_spec(runAs=LABEL), "spec.applications[0].runAs"))},
}


@scenarios(TEMPLATE_ERRORS)
def test_invalid_fleet_template_placeholders_are_rejected(case):
    spec, *fragments = case
    assert_rejected(spec, *fragments, fleet_template=True)


# -- device status -----------------------------------------------------------------------------


STATUS = {
    "conditions": [{"type": "Updating", "status": "False", "reason": "Updated", "message": "",
                    "lastTransitionTime": "2025-01-01T00:00:00Z"}],
    "systemInfo": {"architecture": "amd64", "bootID": "b", "operatingSystem": "linux",
                   "agentVersion": "v1", "hostname": "h", "customInfo": {"rack": "3"}},
    "applications": [{"name": "web", "ready": "1/1", "restarts": 0, "status": "Running",
                      "embedded": False, "appType": "container",
                      "volumes": [{"name": "v", "reference": "quay.io/a/b:1"}]}],
    "applicationsSummary": {"status": "Healthy", "info": "ok"},
    "resources": {"cpu": "Healthy", "memory": "Warning", "disk": "Unknown"},
    "integrity": {"status": "Verified", "tpm": {"status": "Verified"}},
    "config": {"renderedVersion": "3"},
    "os": {"image": "quay.io/a/os:1", "imageDigest": "sha256:abc"},
    "updated": {"status": "UpToDate"},
    "summary": {"status": "Online", "info": "fine"},
    "lifecycle": {"status": "Enrolled"},
    "capabilities": {"osMode": "image"},
    "systemd": [{"unit": "a.service", "description": "A", "enableState": "enabled",
                 "loadState": "loaded", "activeState": "active", "subState": "running"}],
    "futureField": {"anything": True},
}


def status_errors(status) -> list[str]:
    errors = Errors()
    validate_device_status(status, errors)
    return errors.messages


def test_agent_status_with_unknown_fields_is_valid():
    assert status_errors(STATUS) == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s["summary"].update(status="Offline"), "status.summary.status: Unsupported"),
        (lambda s: s["conditions"][0].update(status="Yes"), "conditions[0].status: Unsupported"),
        (lambda s: s["applications"][0].update(restarts="1"), "restarts: Invalid value"),
        (lambda s: s["applications"][0].update(status="Sleeping"), "applications[0].status"),
        (lambda s: s["resources"].update(cpu="Hot"), "resources.cpu: Unsupported"),
        (lambda s: s["systemInfo"].update(hostname=1), "systemInfo.hostname: Invalid value"),
        (lambda s: s["capabilities"].update(osMode="rpm"), "capabilities.osMode"),
        (lambda s: s["systemd"][0].update(activeState="up"), "systemd[0].activeState"),
        (lambda s: s.update(config="3"), "status.config: Invalid value"),
    ],
)
def test_agent_status_with_bad_types_or_enums_is_rejected(mutate, fragment):
    status = copy.deepcopy(STATUS)
    mutate(status)
    messages = status_errors(status)
    assert any(fragment in m for m in messages), messages


def test_status_must_be_an_object():
    assert status_errors("Online") == ['status: Invalid value: "Online": must be an object']


# -- fleets ------------------------------------------------------------------------------------


def test_fleet_wire_example_is_valid():
    spec = fleet(
        {"os": {"image": 'quay.io/org/os:{{ getOrDefault .metadata.labels "os-tag" "stable" }}'},
         "config": [{"name": "site", "gitRef": {"repository": "site-settings",
                                                "targetRevision": LABEL, "path": "/cfg"}}]},
        selector={"matchLabels": {"type": "pos-terminal"},
                  "matchExpressions": [{"key": "stage", "operator": "In", "values": ["prod"]}]},
        rolloutPolicy={
            "deviceSelection": {"strategy": "BatchSequence", "sequence": [
                {"selector": {"matchLabels": {"stage": "canary"}}, "limit": 1}, {"limit": "10%"}]},
            "successThreshold": "95%",
            "disruptionBudget": {"groupBy": ["store"], "minAvailable": 2},
            "defaultUpdateTimeout": "24h",
        },
    )
    assert fleet_errors(spec) == []


def test_fleet_template_labels_and_spec_are_validated():
    spec = fleet({"os": {"image": "quay.io/org/os:{{ .spec }}"}})
    spec["template"]["metadata"]["labels"] = {"bad key!": "x"}
    messages = fleet_errors(spec)
    assert any(m.startswith("spec.template.metadata.labels") for m in messages), messages
    assert any(m.startswith("spec.template.spec.os.image: Invalid value") for m in messages)


def test_label_selector_with_only_expressions_is_valid():
    errors = Errors()
    validate_label_selector({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, errors,
                            "spec.selector")
    assert errors.messages == []


def with_selector(selector) -> dict:
    return fleet(selector=selector)


def with_policy(**policy) -> dict:
    return fleet(rolloutPolicy=policy)


def with_selection(selection) -> dict:
    return with_policy(deviceSelection=selection)


def with_batch(**batch) -> dict:
    return with_selection({"strategy": "BatchSequence", "sequence": [batch]})


def with_budget(**budget) -> dict:
    return with_policy(disruptionBudget=budget)


def expression(**fields) -> dict:
    return with_selector({"matchExpressions": [{"key": "a", **fields}]})


FLEET_ERRORS = {
    "fleet without template": (
        {"selector": {"matchLabels": {"a": "b"}}}, "spec.template: Required value"),
    "template without spec": ({"template": {"metadata": {}}}, "spec.template.spec: Required"),
    "unknown fleet field": (fleet(owner="x"), 'unknown field "owner"'),
    "unknown template field": (
        {"template": {"spec": {}, "status": {}}}, "spec.template: Invalid value",
        'unknown field "status"'),
    "empty selector": (with_selector({}), "at least one of [matchLabels,matchExpressions]"),
    "In without values": (expression(operator="In"), "values: Required value"),
    "DoesNotExist with values": (
        expression(operator="DoesNotExist", values=["x"]), "values: Forbidden"),
    "unknown operator": (expression(operator="Gt", values=["1"]), "operator: Unsupported"),
    "empty expression list": (
        with_selector({"matchExpressions": []}), "matchExpressions: Required value"),
    "expression with bad key": (
        with_selector({"matchExpressions": [{"key": "bad key", "operator": "Exists"}]}),
        "matchExpressions[0].key"),
    "match label with bad value": (
        with_selector({"matchLabels": {"a": "bad value!"}}), "selector.matchLabels"),
    "rollout policy without selection or budget": (
        with_policy(successThreshold="90%"),
        "at least one of [deviceSelection, disruptionBudget]"),
    **{f"batch limit {limit!r}": (with_batch(limit=limit), "sequence[0].limit: Invalid value")
       for limit in (0, -3, "101%", "10", 1.5, True)},
    "selection without strategy": (
        with_selection({"sequence": [{"limit": 1}]}), "strategy: Required value"),
    "unknown strategy": (with_selection({"strategy": "AllAtOnce"}), "strategy: Unsupported"),
    "empty batch sequence": (
        with_selection({"strategy": "BatchSequence", "sequence": []}),
        "sequence: Required value"),
    "null batch": (
        with_selection({"strategy": "BatchSequence", "sequence": [None]}), "must not be null"),
    "batch threshold without percent sign": (
        with_batch(successThreshold="95"), "successThreshold: Invalid value",
        "percentage pattern"),
    "budget without min or max": (
        with_budget(groupBy=["a"]), "at least one of [minAvailable, maxUnavailable]"),
    "budget minAvailable 0": (with_budget(minAvailable=0), "minAvailable: Invalid value"),
    "budget maxUnavailable string": (
        with_budget(maxUnavailable="1"), "maxUnavailable: Invalid value"),
    "budget groupBy duplicates": (
        with_budget(maxUnavailable=1, groupBy=["a", "a"]), "must be unique"),
}


@scenarios(FLEET_ERRORS)
def test_invalid_fleet_spec_is_rejected(case):
    spec, *fragments = case
    assert_fleet_rejected(spec, *fragments)


@pytest.mark.parametrize(("value", "ok"), [("95%", True), ("100%", True), ("0%", True),
                                           ("101%", False), ("05%", False), ("95", False)])
def test_rollout_success_threshold_is_a_percentage(value, ok):
    messages = fleet_errors(fleet(rolloutPolicy={"disruptionBudget": {"minAvailable": 1},
                                                 "successThreshold": value}))
    assert (messages == []) is ok, messages


@pytest.mark.parametrize(("value", "ok"), [("24h", True), ("90s", True), ("0m", True),
                                           ("1d", False), ("01h", False), ("1h30m", False)])
def test_default_update_timeout_is_a_duration(value, ok):
    messages = fleet_errors(fleet(rolloutPolicy={"disruptionBudget": {"minAvailable": 1},
                                                 "defaultUpdateTimeout": value}))
    assert (messages == []) is ok, messages
