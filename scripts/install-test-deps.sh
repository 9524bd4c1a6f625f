#!/usr/bin/env bash
# Installs the system packages the test suite needs. As root it installs them with apt-get;
# otherwise it only checks and says what is missing. Safe to run repeatedly.
set -euo pipefail

packages=(git)
here="$(cd "$(dirname "$0")" && pwd)"
prepare="$here/../../shared/ci/prepare-host.sh"

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing packages for the tests: ${missing[*]} (install them with apt-get)" >&2
    exit 1
  fi
fi
# On CI machines of this project's kind the shared preparation script also fixes podman.
if [[ -x "$prepare" && $(id -u) -eq 0 && "${FLIGHTCTL_PREPARE_HOST:-0}" == 1 ]]; then
  bash "$prepare"
fi
