#!/usr/bin/env bash
# Builds a Debian bookworm base image without any image registry and prints its name:
#   build-base.sh server|postgresql|alertmanager
# mmdebstrap makes a minimal root file system from Debian's packages (fetched from Debian's
# mirror, which is reachable where no registry is), `podman import` turns it into a local
# image. The tag is a hash of this script, so an existing image is reused as long as its
# inputs (the suite, the package list, this script) have not changed; FLIGHTCTL_REBUILD_BASE=1
# forces a new one. Elsewhere, pass BASE_IMAGE=<registry image> to build.sh instead.
set -euo pipefail
kind="${1:?usage: build-base.sh server|postgresql|alertmanager}"
suite=bookworm
case "$kind" in
  # The server: Debian's Python 3.11 (the wheels are installed into a venv by the
  # Containerfile) and the PostgreSQL 15 client tools that `flightctl-server backup` runs.
  server) packages=python3,python3-venv,ca-certificates,postgresql-client-15,tzdata ;;
  # The database: Debian's PostgreSQL 15 server.
  postgresql) packages=postgresql-15,ca-certificates,tzdata ;;
  # The optional Alertmanager: Debian's prometheus-alertmanager.
  alertmanager) packages=prometheus-alertmanager,ca-certificates,tzdata ;;
  *) echo "unknown base image kind: $kind (server, postgresql or alertmanager)" >&2; exit 2 ;;
esac
key="$( { cat "$0"; echo "$kind $suite $packages"; } | sha256sum | cut -c1-12)"
image="localhost/flightctl-base-$kind:$key"
if [[ "${FLIGHTCTL_REBUILD_BASE:-0}" != 1 ]] && podman image exists "$image"; then
  echo "$image"; exit 0
fi
command -v mmdebstrap >/dev/null ||
  { echo "mmdebstrap is required: apt-get install mmdebstrap" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# minbase: essential packages and apt only; docs and locales other than C are dropped to keep
# the image small.
mmdebstrap --quiet --variant=minbase --include="$packages" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
  "$suite" "$work/root.tar" >&2
podman import --quiet --change 'CMD ["/bin/bash"]' "$work/root.tar" "$image" >/dev/null
# Bases of earlier inputs are not needed any more (kept while an image still uses them).
podman images --format '{{.Repository}}:{{.Tag}}' "localhost/flightctl-base-$kind" |
  grep -vxF "$image" | xargs -r podman rmi >/dev/null 2>&1 || true
echo "$image"
