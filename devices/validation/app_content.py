"""Validation of inline application packages (``applications[].inline``).

Inline apps ship their files in the spec: compose files, quadlet unit files or a KubeVirt
``vm.yaml``. Every entry is an ``ApplicationContent`` (relative path, content, encoding); the
files of one app are then checked together by a per-type package validator, which is where
the reference's messages such as ``compose spec has no services`` come from.
"""

from __future__ import annotations

import posixpath

import yaml

from .common import (
    SpecContext,
    as_list,
    as_object,
    check_image_reference,
    check_inline_content,
    check_relative_path,
)

COMPOSE_BASE_NAMES = (
    "docker-compose.yaml",
    "docker-compose.yml",
    "podman-compose.yaml",
    "podman-compose.yml",
)
QUADLET_EXTENSIONS = (".container", ".volume", ".network", ".image", ".pod", ".kube")
UNSUPPORTED_QUADLET_EXTENSIONS = (".build",)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (e.g. two services with one name)."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def validate_inline_contents(ctx: SpecContext, path: str, value, app_type: str, app_name) -> None:
    items = as_list(ctx.errors, path, value)
    if items is None:
        return
    files: dict[str, bytes | None] = {}
    paths: dict[str, str] = {}
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        content = as_object(ctx.errors, item_path, item)
        if content is None:
            continue
        file_name = content.get("path")
        if not ctx.templated(f"{item_path}.path", file_name):
            check_relative_path(ctx.errors, f"{item_path}.path", file_name)
        raw = check_inline_content(
            ctx, item_path, content.get("content"), content.get("contentEncoding"),
            template_ok=True,
        )
        if not isinstance(file_name, str):
            continue
        if file_name in files:
            ctx.errors.invalid(f"{item_path}.path", file_name, "duplicate inline path")
            continue
        files[file_name] = raw
        paths[file_name] = item_path
    validator = _PACKAGE_VALIDATORS.get(app_type)
    if validator is not None:
        validator(ctx, path, files, paths, app_name)


# -- compose -----------------------------------------------------------------------------------


def _compose_path_kind(name: str) -> tuple[str | None, str | None]:
    """Classify a compose file name as ("base"|"override", None) or (None, error)."""
    if posixpath.basename(name) != name:
        return None, f"compose file must be at root level: {name!r}"
    if not name.endswith((".yaml", ".yml")):
        return None, "compose path must have .yaml or .yml extension"
    if ".override." in name:
        if name.startswith(("docker-compose.", "podman-compose.")):
            return "override", None
        return None, "invalid override compose path"
    if name in COMPOSE_BASE_NAMES:
        return "base", None
    return None, "invalid compose path, supported paths: " + ", ".join(COMPOSE_BASE_NAMES)


def _validate_compose(ctx: SpecContext, path: str, files: dict, paths: dict, _name) -> None:
    errors = ctx.errors
    kinds: dict[str, str] = {}
    for name, raw in files.items():
        kind, problem = _compose_path_kind(name)
        if problem:
            errors.invalid(f"{paths[name]}.path", name, problem)
            continue
        if kind in kinds.values():
            errors.invalid(f"{paths[name]}.path", name, f"multiple {kind} compose paths provided")
            continue
        kinds[name] = kind
        if raw:
            _validate_compose_document(ctx, f"{paths[name]}.content", raw)
    if kinds and "base" not in kinds.values():
        errors.invalid(f"{path}", sorted(kinds), "override compose path requires a base path")
    prefixes = {name.split("-", 1)[0] for name in kinds}
    if len(prefixes) > 1:
        errors.invalid(path, sorted(kinds), "mismatched tool types for compose base and override")


def _validate_compose_document(ctx: SpecContext, path: str, raw: bytes) -> None:
    errors = ctx.errors
    try:
        document = yaml.load(raw.decode("utf-8", errors="replace"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        errors.invalid(path, "...", f"invalid compose YAML: {_one_line(exc)}")
        return
    if document is not None and not isinstance(document, dict):
        errors.invalid(path, "...", "invalid compose YAML: top level must be a mapping")
        return
    services = (document or {}).get("services")
    if not isinstance(services, dict) or not services:
        errors.invalid(path, "...", "compose spec has no services")
        return
    for name, service in services.items():
        service_path = f"{path}.services.{name}"
        if not isinstance(service, dict):
            errors.invalid(service_path, service, "invalid compose YAML: service must be a mapping")
            continue
        if service.get("container_name"):
            errors.invalid(
                service_path,
                service["container_name"],
                f"service {name} has a hardcoded container_name which is not supported",
            )
        if not service.get("image"):
            errors.invalid(service_path, name, f"service {name} is missing an image")
        else:
            check_image_reference(ctx, f"{service_path}.image", service["image"])


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


# -- quadlet -----------------------------------------------------------------------------------


def parse_unit_file(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse a systemd/quadlet unit file into {section: [(key, value), ...]}.

    Raises ValueError for lines outside a section or without '='.
    """
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, line in enumerate(text.splitlines(), start=1):
        line = pending + line.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" not in line or current is None:
            raise ValueError(f"line {number}: expected 'Key=Value' inside a [Section]")
        else:
            key, _, val = line.partition("=")
            current.append((key.strip(), val.strip()))
    return sections


_QUADLET_REFERENCE_KEYS = ("Image", "Pod", "Network", "Volume", "Yaml")


def _validate_quadlet(ctx: SpecContext, path: str, files: dict, paths: dict, _name) -> None:
    errors = ctx.errors
    units: dict[str, dict] = {}
    for name, raw in files.items():
        if name.endswith(UNSUPPORTED_QUADLET_EXTENSIONS):
            errors.invalid(f"{paths[name]}.path", name, "quadlet .build files are not supported")
        elif name.endswith(QUADLET_EXTENSIONS) and raw is not None:
            try:
                units[name] = parse_unit_file(raw.decode("utf-8", errors="replace"))
            except ValueError as exc:
                errors.invalid(f"{paths[name]}.content", name, f"parse quadlet spec: {exc}")
    if files and not any(name.endswith(QUADLET_EXTENSIONS) for name in files):
        errors.invalid(path, sorted(files), "inline quadlet application has no quadlet files")
    volume_names: dict[str, str] = {}
    for name, unit in units.items():
        content_path = f"{paths[name]}.content"
        _check_quadlet_unit(ctx, content_path, name, unit, files)
        for volume_name in _values(unit, "Volume", "VolumeName"):
            if volume_name in volume_names:
                errors.invalid(
                    content_path,
                    volume_name,
                    f"duplicate VolumeName {volume_name!r}, also defined in "
                    f"{volume_names[volume_name]}",
                )
            volume_names[volume_name] = name


def _values(unit: dict, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def _check_quadlet_unit(ctx: SpecContext, path: str, name: str, unit: dict, files: dict) -> None:
    errors = ctx.errors
    section = name.rsplit(".", 1)[1].capitalize()
    if section not in unit:
        errors.invalid(path, name, f"quadlet file must contain a [{section}] section")
        return
    if section in ("Container", "Image") and not _values(unit, section, "Image"):
        errors.invalid(path, name, f"[{section}] section must define Image")
    for key, value in unit[section]:
        if key not in _QUADLET_REFERENCE_KEYS:
            continue
        target = value.split(":", 1)[0] if key == "Volume" else value
        if target.endswith(QUADLET_EXTENSIONS + UNSUPPORTED_QUADLET_EXTENSIONS):
            if target not in files:
                errors.invalid(path, value, f"{key} references {target!r} which is not defined")
        elif key == "Image":
            check_image_reference(ctx, f"{path}.{section}.Image", value)


# -- vm ----------------------------------------------------------------------------------------


def _validate_vm(ctx: SpecContext, path: str, files: dict, paths: dict, app_name) -> None:
    errors = ctx.errors
    kube_files = [name for name in files if name.endswith(".kube")]
    if len(kube_files) > 1:
        errors.invalid(path, kube_files, "at most one .kube file is allowed")
    for name in files:
        if name != "vm.yaml" and not name.endswith(".kube"):
            errors.invalid(
                f"{paths[name]}.path", name, "only vm.yaml and a single .kube file are allowed"
            )
    if "vm.yaml" not in files:
        errors.required(path, 'must contain exactly one file named "vm.yaml"')
        return
    content_path = f"{paths['vm.yaml']}.content"
    try:
        manifest = yaml.safe_load((files["vm.yaml"] or b"").decode("utf-8", errors="replace"))
    except yaml.YAMLError as exc:
        errors.invalid(content_path, "vm.yaml", f"must be valid YAML: {_one_line(exc)}")
        return
    manifest = manifest if isinstance(manifest, dict) else {}
    if manifest.get("kind") != "VirtualMachine":
        errors.invalid(content_path, manifest.get("kind"), 'kind must be "VirtualMachine"')
    if manifest.get("apiVersion") != "kubevirt.io/v1":
        errors.invalid(
            content_path, manifest.get("apiVersion"), 'apiVersion must be "kubevirt.io/v1"'
        )
    meta = manifest.get("metadata")
    vm_name = meta.get("name") if isinstance(meta, dict) else None
    if vm_name != app_name:
        errors.invalid(content_path, vm_name, "metadata.name must match the application name")


_PACKAGE_VALIDATORS = {
    "compose": _validate_compose,
    "quadlet": _validate_quadlet,
    "vm": _validate_vm,
}
