#!/usr/bin/env bash
# Builds the agent RPM from the pip-built wheel: build-rpm.sh [OUTPUT_DIR] (default dist/rpm).
# Needs rpmbuild: as root it installs it (Debian's rpm, or rpm-build with dnf) when missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agent="$(dirname "$here")"
out="$(realpath -m "${1:-$agent/../dist/rpm}")"
python="${PYTHON:-python3}"
if ! command -v rpmbuild >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm >/dev/null
  elif [[ $(id -u) -eq 0 ]] && command -v dnf >/dev/null; then
    dnf install -y -q rpm-build
  else
    echo "rpmbuild is required: apt-get install rpm (or dnf install rpm-build)" >&2; exit 1
  fi
fi

top="$(mktemp -d)"
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES/bundled,SPECS,BUILD,RPMS,SRPMS}
"$python" -m pip wheel -q --no-deps -w "$top/SOURCES" "$agent" 2>"$top/pip.log" ||
  { cat "$top/pip.log" >&2; exit 1; }
# The pure-Python dependencies the target distribution does not package, at the versions the
# agent's pyproject.toml asks for.
"$python" -m pip wheel -q --no-deps -w "$top/SOURCES/bundled" "segno>=1.6" "grpclib>=0.4.7,<0.5" \
  2>"$top/pip.log" || { cat "$top/pip.log" >&2; exit 1; }
version="$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$agent/pyproject.toml")"
bundled() { ls "$top/SOURCES/bundled" | sed -n "s/^$1-\([^-]*\)-.*/\1/p"; }
cp "$here/flightctl-agent.service" "$here/hooks.d/afterupdating/00-default.yaml" "$top/SOURCES/"
rpmbuild -bb --quiet --define "_topdir $top" --define "agent_version $version" \
  --define "segno_version $(bundled segno)" --define "grpclib_version $(bundled grpclib)" \
  --nodeps "$here/flightctl-agent.spec" >/dev/null
mkdir -p "$out"
cp "$top"/RPMS/noarch/*.rpm "$out/"
ls "$out"/flightctl-agent-"$version"-*.noarch.rpm
