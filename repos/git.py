"""Talking to git repositories with the ``git`` command line.

Credentials never appear on a command line (which ``ps`` and logs could show): HTTP basic auth
goes through a ``GIT_ASKPASS`` helper reading environment variables, bearer tokens, client
certificates and CAs through ``GIT_CONFIG_*`` variables and files in a private 0700 directory
that is removed afterwards, SSH keys through ``GIT_SSH_COMMAND`` with a 0600 key file, the
passphrase through ``SSH_ASKPASS``, and host keys checked against ``ssh_known_hosts_file``.

Fetched commits are kept in one bare mirror per repository URL under
``<data dir>/git-cache``, so rendering a fleet of devices reads files locally instead of cloning
per device; a file lock serialises fetches into one mirror across worker processes.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from repos import guards

TIMEOUT = 60
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_USERINFO_RE = re.compile(r"(\w+://)[^/@\s]+@")
_ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$FLIGHTCTL_GIT_USERNAME" ;;
  *) printf '%s\\n' "$FLIGHTCTL_GIT_PASSWORD" ;;
esac
"""
_SSH_ASKPASS = """#!/bin/sh
printf '%s\\n' "$FLIGHTCTL_SSH_PASSPHRASE"
"""


class GitError(RuntimeError):
    """A git operation failed; the message is the root cause, free of credentials."""


@dataclass(frozen=True)
class GitFile:
    path: str  # absolute device path
    content: bytes
    executable: bool


def scrub(text: str) -> str:
    """Remove userinfo from URLs in a message."""
    return _USERINFO_RE.sub(r"\1", text)


def _write_secret(directory: Path, name: str, data: bytes, mode: int = 0o600) -> str:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return str(path)


def known_hosts_file() -> str:
    configured = settings.FLIGHTCTL.ssh_known_hosts_file
    return configured or str(Path(settings.DATA_DIR) / "ssh" / "known_hosts")


@contextmanager
def git_environment(spec: dict):
    """Environment for running git against the repository ``spec`` (secrets in clear).

    Refuses (GitError) a spec that breaks the rules of :mod:`repos.guards`, however it came to
    be stored: its URL would put credentials on the command line, or its credentials would go
    over plain HTTP."""
    problem = guards.url_userinfo_problem(spec.get("url"))
    if problem:
        raise GitError(f"refusing to use the repository URL: it {problem}")
    plain = guards.plain_http_problem(spec)
    if plain:
        raise GitError(f"refusing to use the repository: {plain[1]}")
    private = Path(tempfile.mkdtemp(prefix="fctl-git-"))
    os.chmod(private, 0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(private),
        "LC_ALL": "C",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    config: list[tuple[str, str]] = [("protocol.version", "2")]
    try:
        http = spec.get("httpConfig") or {}
        if http.get("username") is not None:
            env["GIT_ASKPASS"] = _write_secret(private, "askpass", _ASKPASS.encode(), 0o700)
            env["FLIGHTCTL_GIT_USERNAME"] = http["username"]
            env["FLIGHTCTL_GIT_PASSWORD"] = http.get("password") or ""
        elif http.get("token"):
            config.append(("http.extraHeader", f"Authorization: Bearer {http['token']}"))
        if http.get("tls.crt"):
            config.append(("http.sslCert", _write_secret(
                private, "tls.crt", base64.b64decode(http["tls.crt"]))))
            config.append(("http.sslKey", _write_secret(
                private, "tls.key", base64.b64decode(http["tls.key"]))))
        if http.get("ca.crt"):
            config.append(("http.sslCAInfo", _write_secret(
                private, "ca.crt", base64.b64decode(http["ca.crt"]))))
        if http.get("skipServerVerification"):
            config.append(("http.sslVerify", "false"))
        ssh = spec.get("sshConfig")
        if ssh is not None:
            env["GIT_SSH_COMMAND"] = _ssh_command(ssh, private, env)
        env["GIT_CONFIG_COUNT"] = str(len(config))
        for index, (key, value) in enumerate(config):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        yield env
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _ssh_command(ssh: dict, private: Path, env: dict) -> str:
    parts = ["ssh", "-F", os.devnull, "-o", "PasswordAuthentication=no",
             "-o", "KbdInteractiveAuthentication=no", "-o", "ConnectTimeout=15"]
    if ssh.get("sshPrivateKey"):
        key = base64.b64decode(ssh["sshPrivateKey"])
        parts += ["-i", _write_secret(private, "id_key", key.rstrip(b"\n") + b"\n"),
                  "-o", "IdentitiesOnly=yes"]
    if ssh.get("privateKeyPassphrase"):
        env["SSH_ASKPASS"] = _write_secret(private, "ssh-askpass", _SSH_ASKPASS.encode(), 0o700)
        env["SSH_ASKPASS_REQUIRE"] = "force"
        env["FLIGHTCTL_SSH_PASSPHRASE"] = ssh["privateKeyPassphrase"]
        env["DISPLAY"] = env.get("DISPLAY", ":0")
    else:
        parts += ["-o", "BatchMode=yes"]
    if ssh.get("skipServerVerification"):
        parts += ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}"]
    else:
        parts += ["-o", "StrictHostKeyChecking=yes",
                  "-o", f"UserKnownHostsFile={known_hosts_file()}"]
    return " ".join(shlex.quote(p) for p in parts)


def _root_cause(stderr: str) -> str:
    lines = [scrub(line.strip()) for line in stderr.splitlines() if line.strip()]
    if any("terminal prompts disabled" in line for line in lines):
        return "authentication required: the repository refused the credentials (or none given)"
    if any("Host key verification failed" in line for line in lines):
        return ("Host key verification failed: the server's SSH host key is not in "
                f"{known_hosts_file()}")
    for prefix in ("fatal:", "error:", "ERROR:", "remote:"):
        found = [line for line in lines if line.startswith(prefix)]
        if found:
            detail = "; ".join(dict.fromkeys(line.split(":", 1)[1].strip() for line in found))
            return detail[:500]
    return (lines[-1] if lines else "git failed")[:500]


def run(args: list[str], env: dict, *, cwd: str | None = None, timeout: float = TIMEOUT,
        input: bytes | None = None) -> bytes:
    try:
        result = subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True,
                                timeout=timeout, input=input, check=False)
    except FileNotFoundError:
        raise GitError("the git command is not installed on the server")
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {int(timeout)}s")
    if result.returncode != 0:
        raise GitError(_root_cause(result.stderr.decode(errors="replace")))
    return result.stdout


def ls_remote(spec: dict, *patterns: str, timeout: float = TIMEOUT) -> dict[str, str]:
    """``{ref: sha}`` advertised by the repository (``HEAD`` included)."""
    with git_environment(spec) as env:
        out = run(["ls-remote", "--", spec["url"], *patterns], env, timeout=timeout)
    refs = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    return refs


def remote_revision(spec: dict, revision: str) -> str | None:
    """The commit ``revision`` (branch, tag, ref or full SHA) names now; None if unknown."""
    if _SHA_RE.match(revision):
        return revision
    refs = ls_remote(spec, revision)
    for ref in (f"refs/heads/{revision}", f"refs/tags/{revision}^{{}}", f"refs/tags/{revision}",
                revision):
        if ref in refs:
            return refs[ref]
    return None


# -- the local mirror -----------------------------------------------------------------------


def _mirror_path(url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:24]
    return Path(settings.DATA_DIR) / "git-cache" / f"{digest}.git"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _local_env() -> dict:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
            "HOME": tempfile.gettempdir()}


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        run(["cat-file", "-e", f"{sha}^{{commit}}"], _local_env(), cwd=str(mirror))
        return True
    except GitError:
        return False


def fetch(spec: dict, revision: str, *, want: str | None = None) -> tuple[Path, str]:
    """Make ``want`` (or the commit ``revision`` names now) available in the local mirror;
    return the mirror and the commit SHA."""
    mirror = _mirror_path(spec["url"])
    with _locked(mirror):
        if not (mirror / "HEAD").exists():
            run(["init", "--bare", "-q", str(mirror)], _local_env())
        if want and _has_commit(mirror, want):
            return mirror, want
        with git_environment(spec) as env:
            # Full history of the one revision (no --depth): a commit frozen earlier stays
            # reachable after the branch moves on, and later fetches are incremental.
            run(["fetch", "-q", "--no-tags", "--", spec["url"], revision], env, cwd=str(mirror))
        sha = run(["rev-parse", "FETCH_HEAD^{commit}"], _local_env(),
                  cwd=str(mirror)).decode().strip()
        # A ref keeps the fetched objects safe from garbage collection.
        run(["update-ref", f"refs/flightctl/{sha}", sha], _local_env(), cwd=str(mirror))
    if want and want != sha:
        if not _has_commit(mirror, want):
            raise GitError(f"commit {want} is no longer reachable from {revision}")
        return mirror, want
    return mirror, sha


_TREE_CACHE: OrderedDict = OrderedDict()
_TREE_CACHE_SIZE = 64


def read_path(mirror: Path, sha: str, path: str) -> list[GitFile]:
    """The files at ``path`` of commit ``sha``: a directory maps onto ``/`` (recursively), a
    single file onto ``/<basename>``."""
    key = (str(mirror), sha, path)
    if key in _TREE_CACHE:
        _TREE_CACHE.move_to_end(key)
        return _TREE_CACHE[key]
    files = _read_path(mirror, sha, path)
    _TREE_CACHE[key] = files
    if len(_TREE_CACHE) > _TREE_CACHE_SIZE:
        _TREE_CACHE.popitem(last=False)
    return files


def _read_path(mirror: Path, sha: str, path: str) -> list[GitFile]:
    env, cwd = _local_env(), str(mirror)
    rel = path.strip("/")
    obj = f"{sha}:{rel}" if rel else f"{sha}^{{tree}}"
    try:
        kind = run(["cat-file", "-t", obj], env, cwd=cwd).decode().strip()
    except GitError:
        raise GitError(f'path "{path}" does not exist in commit {sha}')
    if kind == "blob":
        mode = _blob_mode(mirror, sha, rel)
        content = run(["cat-file", "blob", obj], env, cwd=cwd)
        return [GitFile("/" + rel.rsplit("/", 1)[-1], content, mode == "100755")]
    entries = []
    listing = run(["ls-tree", "-r", "-z", obj], env, cwd=cwd).decode(errors="replace")
    for entry in filter(None, listing.split("\0")):
        meta, _, name = entry.partition("\t")
        mode, kind, blob = meta.split()
        if kind == "blob" and mode in ("100644", "100755"):  # symlinks and submodules skipped
            entries.append((name, blob, mode == "100755"))
    if not entries:
        return []
    # One cat-file process for every blob of the tree.
    batch = run(["cat-file", "--batch"], env, cwd=cwd,
                input="".join(f"{blob}\n" for _, blob, _ in entries).encode())
    files, offset = [], 0
    for name, _blob, executable in entries:
        header_end = batch.index(b"\n", offset)
        size = int(batch[offset:header_end].split()[2])
        content = batch[header_end + 1: header_end + 1 + size]
        offset = header_end + 1 + size + 1
        files.append(GitFile("/" + name, content, executable))
    return files


def _blob_mode(mirror: Path, sha: str, rel: str) -> str:
    parent, _, name = rel.rpartition("/")
    listing = run(["ls-tree", "-z", f"{sha}:{parent}" if parent else sha, "--", name],
                  _local_env(), cwd=str(mirror)).decode(errors="replace")
    return listing.split()[0] if listing else "100644"
