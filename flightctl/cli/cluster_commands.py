"""``flightctl-server cluster-bundle`` and ``join``: several server nodes, one installation.

Every node of a multi-host installation (docs/deploy-multihost.md) runs ``serve`` against one
external PostgreSQL and must hold the same secret material, so that a device can talk to any
node and any node can read what another wrote:

* the root CA and the client signer (``pki/ca.*``, ``pki/client-signer.*``): every node's
  server certificate chains to the one root the devices trust, and every node's agent API
  accepts the client certificates any node's signer issued;
* ``secret_key``: sessions, tokens and the console bridge's proofs (devices.console.bridge);
* ``encryption.key``: repository secrets sealed at rest (flightctl/sealing.py);
* ``ssh/known_hosts``, when there is one: the host keys git-over-SSH repositories are checked
  against.

Server certificates are *not* shared: each node issues its own from the shared root on its first
start, for its own names plus ``alt_names`` (the load balancer's name goes there).

``cluster-bundle`` writes that material (created first if this data directory has none yet)
into one gzip'd tar archive, mode 0600, with a manifest of SHA-256 sums; ``join`` checks it and
installs it into a new node's data directory, and writes the node's ``config.yaml`` (the
external database and the public addresses). A data directory whose CA differs from the
bundle's is refused: it belongs to another installation.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import tarfile
import tempfile
from pathlib import Path

import click
import yaml

from flightctl.cli.server import _fail, _load_config, data_dir_option, main

FORMAT = 1
KIND = "flightctl-cluster-bundle"
#: what every bundle holds (besides the keys, and known hosts where there are some)
PKI_FILES = ("pki/ca.crt", "pki/ca.key", "pki/client-signer.crt", "pki/client-signer.key")


def _create_private(path: Path, text: str) -> None:
    """``path`` with ``text``, mode 0600, unless it exists (O_EXCL, as the server does)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _members(config) -> dict[str, Path]:
    """What a bundle carries, created first where this node has none yet."""
    from flightctl.pki import PKI

    data_dir = Path(config.data_dir)
    pki = PKI.from_config(config)  # creates the root and the client signer on first use
    members = {
        "pki/ca.crt": pki.root.cert_path, "pki/ca.key": pki.root.key_path,
        "pki/client-signer.crt": pki.client_signer.cert_path,
        "pki/client-signer.key": pki.client_signer.key_path,
    }
    if config.secret_key:
        click.echo("Note: secret_key is set in this node's configuration; give every node the "
                   "same setting (the bundle carries only the secret_key file)", err=True)
    else:
        _create_private(data_dir / "secret_key", secrets.token_urlsafe(50))
        members["secret_key"] = data_dir / "secret_key"
    sealing = Path(config.encryption_key_file or data_dir / "encryption.key")
    _create_private(sealing, base64.b64encode(secrets.token_bytes(32)).decode())
    members["encryption.key"] = sealing
    known_hosts = Path(config.ssh_known_hosts_file or data_dir / "ssh" / "known_hosts")
    if known_hosts.is_file():
        members["ssh/known_hosts"] = known_hosts
    return members


@main.command("cluster-bundle")
@data_dir_option
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Archive to write (mode 0600: it holds the CA's private key).")
def cluster_bundle(data_dir, output):
    """Write the material every server node shares (CA, client signer, secret and sealing
    keys) to one archive, for `join` on the other nodes."""
    from flightctl import __version__
    from flightctl.backup import _sha256, write_archive

    config = _load_config(data_dir)
    members = _members(config)
    manifest = {"kind": KIND, "format": FORMAT, "version": __version__,
                "created": datetime.datetime.now(datetime.UTC).isoformat(),
                "sha256": {name: _sha256(path) for name, path in members.items()}}
    target = Path(output)
    try:
        write_archive(target, manifest, members)
    except OSError as exc:
        _fail(f"could not write {output}: {exc}")
    click.echo(f"Cluster bundle written to {output} ({len(members)} files); install it on each "
               f"other node with `flightctl-server join {target.name} --database-url ...`")


def _read_bundle(archive: Path, into: Path) -> dict:
    """Unpack and check ``archive``; its manifest, or one error line."""
    from flightctl.backup import _sha256

    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(into, filter="data")
        manifest = json.loads((into / "manifest.json").read_text())
    except (OSError, tarfile.TarError, ValueError) as exc:
        _fail(f"{archive} is not a readable cluster bundle: {exc}")
    if manifest.get("kind") != KIND or manifest.get("format") != FORMAT:
        _fail(f"{archive} is not a cluster bundle of format {FORMAT} (a backup archive is "
              f"restored with `restore`)")
    sums = manifest.get("sha256") or {}
    present = {p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file()}
    if present - {"manifest.json"} != set(sums) or not set(PKI_FILES) <= set(sums):
        _fail(f"{archive} does not hold exactly the files its manifest lists")
    for name, expected in sums.items():
        if _sha256(into / name) != expected:
            _fail(f"{archive}: checksum mismatch for {name}")
    return manifest


def _check_database(url: str) -> str:
    """One line about the database ``url`` reaches (a primary is required), or an error."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            migrated = conn.execute("SELECT to_regclass('django_migrations') IS NOT NULL"
                                    ).fetchone()[0]
            where = f"{conn.info.host}:{conn.info.port}"
    except psycopg.Error as exc:
        _fail(f"cannot reach the database: {str(exc).strip().splitlines()[0]}")
    if standby:
        _fail(f"the database at {where} is a read-only standby; add "
              f"target_session_attrs=read-write to the URL, or name the primary")
    state = "its schema is in place" if migrated else \
        "it has no schema yet: start the first node's `serve` (it migrates) before the others"
    return f"Database at {where} (primary) reachable; {state}"


@main.command("join")
@data_dir_option
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.option("--database-url", required=True, help="The external PostgreSQL every node uses, "
              "e.g. postgresql://flightctl@db1:5432,db2:5432/flightctl"
              "?target_session_attrs=read-write")
@click.option("--base-url", help="What users are told to connect to (the load balancer).")
@click.option("--agent-endpoint", help="What devices are told to connect to (the load "
              "balancer's agent port).")
@click.option("--alt-name", "alt_names", multiple=True, help="Extra name or address of this "
              "node's server certificate (repeatable): the load balancer's.")
@click.option("--console-bridge-address", help="HOST:PORT on the nodes' private network where "
              "this node's user API meets other nodes' agent APIs for consoles (port 0: any).")
@click.option("--no-check", is_flag=True, help="Do not connect to the database now.")
def join(data_dir, archive, database_url, base_url, agent_endpoint, alt_names,
         console_bridge_address, no_check):
    """Install a `cluster-bundle` ARCHIVE into this node's data directory and point the node
    at the installation's database; then run `serve`."""
    from flightctl.backup import _put_file

    config = _load_config(data_dir, database_url=database_url)
    target = Path(config.data_dir)
    with tempfile.TemporaryDirectory(prefix="fctl-join-") as work:
        unpacked = Path(work)
        manifest = _read_bundle(Path(archive), unpacked)
        current = target / "pki" / "ca.crt"
        if current.exists() and current.read_bytes() != (unpacked / "pki/ca.crt").read_bytes():
            _fail(f"{target} already holds another installation's CA ({current}); join a new "
                  f"data directory")
        check = None if no_check else _check_database(database_url)
        # Keys go where this node's settings look for them (the data directory by default).
        placed = {"encryption.key": config.encryption_key_file,
                  "ssh/known_hosts": config.ssh_known_hosts_file}
        for name in manifest["sha256"]:
            _put_file(unpacked / name, Path(placed.get(name) or target / name))
    settings_file = target / "config.yaml"
    document = {}
    if settings_file.is_file():
        document = yaml.safe_load(settings_file.read_text()) or {}
    document["database_url"] = database_url
    for key, value in (("base_url", base_url), ("agent_endpoint", agent_endpoint),
                       ("console_bridge_address", console_bridge_address)):
        if value:
            document[key] = value
    if alt_names:
        document["alt_names"] = sorted(set(document.get("alt_names") or []) | set(alt_names))
    from flightctl.pki import write_private

    # 0600: the URL may carry the database password.
    write_private(settings_file, yaml.safe_dump(document, sort_keys=True).encode())
    if check:
        click.echo(check, err=True)
    click.echo(f"Joined {target} to the installation of {manifest['created']} "
               f"({len(manifest['sha256'])} files; settings in {settings_file}); "
               f"start it with `flightctl-server serve --data-dir {target}`")
