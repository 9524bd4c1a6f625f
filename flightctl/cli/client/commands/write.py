"""Commands that change resources from manifests: ``apply``, ``edit`` and ``delete``.

``apply`` reads YAML or JSON documents (several per file, ``---`` separated; a list or a
``*List`` object counts as its items) and creates-or-replaces each with ``PUT``, as the
reference CLI does. It reports every object on its own line and keeps going after a failure;
the exit code is non-zero if any object failed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import yaml

from flightctl.cli.client import output
from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import CliError, yaml_problem
from flightctl.cli.client.http import ApiError
from flightctl.cli.client.kinds import by_object_kind, parse_resource_args

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


# -- reading manifests --------------------------------------------------------------------------

def manifest_files(paths: tuple[str, ...], recursive: bool) -> list[tuple[str, str]]:
    """``(display name, text)`` of every manifest named by ``-f`` (files, dirs or ``-``)."""
    found = []
    for name in paths:
        if name == "-":
            found.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(name)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern)
                           if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
            if not files:
                raise CliError(f"{name}: no .yaml, .yml or .json files in this directory")
            found.extend((str(p), _read(p)) for p in files)
        else:
            found.append((name, _read(path)))
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file or directory") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a text file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from None


def parse_documents(source: str, text: str) -> list[dict]:
    """The objects of one file; malformed YAML/JSON is an error naming the place."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise CliError(f"{source}: invalid YAML: {yaml_problem(exc)}") from None
    objects: list[dict] = []
    for doc in documents:
        if doc is None:
            continue
        if isinstance(doc, list):
            candidates = doc
        elif isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
                and isinstance(doc.get("items"), list):
            candidates = doc["items"]
        else:
            candidates = [doc]
        for obj in candidates:
            if not isinstance(obj, dict):
                raise CliError(f"{source}: a document must be an object with apiVersion, kind "
                               "and metadata")
            objects.append(obj)
    return objects


# -- apply --------------------------------------------------------------------------------------

@cli.command()
@click.option("-f", "--filename", "filenames", multiple=True, required=True,
              metavar="FILE|DIR|-", help="Manifest file, directory of manifests, or - (stdin).")
@click.option("-R", "--recursive", is_flag=True, help="Descend into subdirectories of DIR.")
@click.option("--dry-run", is_flag=True, help="Check and show what would be applied; send "
              "nothing.")
@common_options
def apply(env: Env, filenames, recursive, dry_run):
    """Create or replace the resources described in YAML/JSON manifests."""
    files = manifest_files(filenames, recursive)
    parsed = [(source, parse_documents(source, text)) for source, text in files]
    failures = 0
    for source, objects in parsed:
        for obj in objects:
            try:
                line = _apply_one(env, obj, dry_run)
            except CliError as exc:
                failures += 1
                click.echo(f"Error: {source}: {exc.message}", err=True)
            else:
                click.echo(f"{source}: {line}")
    if failures:
        raise CliError(f"{failures} of {sum(len(o) for _, o in parsed)} resources failed to "
                       "apply")


def _apply_one(env: Env, obj: dict, dry_run: bool) -> str:
    kind_name = obj.get("kind")
    name = output.dig(obj, "metadata", "name")
    if not kind_name:
        raise CliError("a document has no kind")
    kind = by_object_kind(str(kind_name))
    if kind is None or not kind.apply:
        raise CliError(f'cannot apply kind "{kind_name}"')
    label = f"{kind.singular}/{name or '<generated>'}"
    if not name and kind.apply == "put":
        raise CliError(f"{kind.kind} without metadata.name")
    if dry_run:
        return f"applying {label}: dry run, not sent"
    client = env.client
    try:
        if kind.apply == "put":
            response = client.request("PUT", kind.item(name), body=obj,
                                      api_version=kind.api_version)
        else:
            try:
                response = client.request("POST", kind.collection(), body=obj,
                                          api_version=kind.api_version)
            except ApiError as exc:
                if exc.status != 409 or kind.apply != "post-put":
                    raise
                response = client.request("PUT", kind.item(name), body=obj,
                                          api_version=kind.api_version)
    except ApiError as exc:
        raise CliError(f"applying {label}: {exc.message}") from None
    return f"applying {label}: {response.status_code} {response.reason}"


# -- edit ---------------------------------------------------------------------------------------

def editor_command(explicit: str | None) -> list[str]:
    """The editor to run: --editor, $FLIGHTCTL_EDITOR, $VISUAL, $EDITOR, then vi."""
    for candidate in (explicit, os.environ.get("FLIGHTCTL_EDITOR"), os.environ.get("VISUAL"),
                      os.environ.get("EDITOR")):
        if candidate and candidate.strip():
            return shlex.split(candidate)
    return ["vi"]


@cli.command()
@click.argument("resource", metavar="TYPE/NAME")
@click.option("--editor", metavar="COMMAND", help="Editor to use (default: $FLIGHTCTL_EDITOR, "
              "$VISUAL, $EDITOR, vi).")
@click.option("-o", "--output", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="Format to edit in.")
@click.option("--fleetname", metavar="FLEET", help="Fleet of a template version.")
@common_options
def edit(env: Env, resource, editor, fmt, fleetname):
    """Edit a resource in your editor and replace it on the server when you save.

    If the server refuses the change, your edited copy is kept in a temporary file.
    """
    kind, names = parse_resource_args([resource])
    if len(names) != 1:
        raise CliError("edit needs TYPE/NAME")
    if not kind.editable:
        raise CliError(f"{kind.plural} cannot be edited")
    name = names[0]
    client = env.client
    path = kind.item(name, fleetname)
    original = client.get_json(path, api_version=kind.api_version)
    text = output.dump(original, fmt)
    header = ("# Edit the object below; lines starting with '#' are ignored. Save and quit to "
              "apply,\n# quit without changes to cancel.\n") if fmt == "yaml" else ""
    handle = tempfile.NamedTemporaryFile("w", prefix=f"flightctl-edit-{kind.singular}-",
                                         suffix=f".{fmt}", delete=False)
    with handle:
        handle.write(header + text)
    work = Path(handle.name)
    command = [*editor_command(editor), str(work)]
    try:
        result = subprocess.run(command)
    except OSError as exc:
        work.unlink(missing_ok=True)
        raise CliError(f"cannot run the editor {command[0]!r}: {exc.strerror}") from None
    if result.returncode != 0:
        work.unlink(missing_ok=True)
        raise CliError(f"the editor exited with code {result.returncode}; nothing changed")
    edited_text = work.read_text()
    try:
        edited = json.loads(edited_text) if fmt == "json" else yaml.safe_load(edited_text)
    except (ValueError, yaml.YAMLError) as exc:
        problem = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else str(exc)
        raise _kept(work, f"the edited {fmt.upper()} is invalid: {problem}") from None
    if edited == original:
        click.echo("Edit cancelled, no changes made.")
        work.unlink(missing_ok=True)
        return
    if not isinstance(edited, dict):
        raise _kept(work, "the edited document is not an object")
    if output.dig(edited, "metadata", "name") != name:
        raise _kept(work, "metadata.name cannot be changed")
    try:
        client.request("PUT", path, body=edited, api_version=kind.api_version)
    except ApiError as exc:
        raise _kept(work, exc.message) from None
    work.unlink(missing_ok=True)
    click.echo(f"{kind.singular}/{name} edited")


def _kept(work: Path, message: str) -> CliError:
    """A failed edit: keep the user's work and say where it is."""
    return CliError(f"{message}; your changes are saved in {work}")


# -- delete -------------------------------------------------------------------------------------

@cli.command()
@click.argument("resources", nargs=-1, required=True, metavar="TYPE/NAME | TYPE NAME [NAME...]")
@click.option("-f", "--fleetname", metavar="FLEET", help="Fleet of the template versions.")
@click.option("--catalog", metavar="CATALOG", help="Catalog of the catalog items.")
@common_options
def delete(env: Env, resources, fleetname, catalog):
    """Delete resources by name (there is no delete-all: name each one)."""
    kind, names = parse_resource_args(resources)
    if not kind.deletable:
        raise CliError(f"{kind.plural} cannot be deleted")
    if not names:
        raise CliError(f"name the {kind.plural} to delete: delete {kind.singular}/NAME")
    parent = fleetname if kind.parent == "fleetname" else catalog
    client = env.client
    failed = 0
    for name in names:
        try:
            client.request("DELETE", kind.item(name, parent), api_version=kind.api_version)
        except ApiError as exc:
            failed += 1
            click.echo(f"Error: deleting {kind.singular}/{name}: {exc.message}", err=True)
        else:
            click.echo(f"Deletion request for {kind.singular} \"{name}\" completed")
    if failed:
        raise CliError(f"{failed} of {len(names)} deletions failed")

