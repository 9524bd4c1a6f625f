#!/usr/bin/env bash
# Builds the agent RPM from the pip-built wheel: build-rpm.sh [OUTPUT_DIR] (default dist/rpm).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
agent="$(dirname "$here")"
out="$(realpath -m "${1:-$agent/../dist/rpm}")"
python="${PYTHON:-python3}"
command -v rpmbuild >/dev/null || { echo "rpmbuild is required: apt-get install rpm" >&2; exit 1; }

top="$(mktemp -d)"
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
"$python" -m pip wheel -q --no-deps -w "$top/SOURCES" "$agent" 2>"$top/pip.log" ||
  { cat "$top/pip.log" >&2; exit 1; }
version="$("$python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$agent/pyproject.toml")"
cp "$here/flightctl-agent.service" "$here/hooks.d/afterupdating/00-default.yaml" "$top/SOURCES/"
rpmbuild -bb --quiet --define "_topdir $top" --define "agent_version $version" \
  --nodeps "$here/flightctl-agent.spec" >/dev/null
mkdir -p "$out"
cp "$top"/RPMS/noarch/*.rpm "$out/"
ls "$out"/flightctl-agent-"$version"-*.noarch.rpm
