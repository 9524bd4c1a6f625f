#!/usr/bin/env bash
# Builds the deployment's images and prints their names:
#   build.sh server [--source DIR] [--tag IMAGE]     the server (wheels built from DIR)
#   build.sh postgresql [--tag IMAGE]                the database
#   build.sh alertmanager [--tag IMAGE]              the optional Alertmanager
# BASE_IMAGE=<image> builds on that image (e.g. docker.io/library/debian:bookworm-slim from a
# registry); without it the base comes from build-base.sh (Debian packages, no registry).
# PYTHON: the Python 3.11 that builds the wheels (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kind="${1:?usage: build.sh server|postgresql|alertmanager [--source DIR] [--tag IMAGE]}"; shift
source_dir="$(cd "$here/../.." && pwd)"
tag=""
while (($#)); do
  case "$1" in
    --source) source_dir="$(cd "$2" && pwd)"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
base="${BASE_IMAGE:-$(bash "$here/build-base.sh" "$kind")}"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
case "$kind" in
  server)
    tag="${tag:-localhost/flightctl-server:latest}"
    cp "$here/Containerfile" "$context/Containerfile"
    # The wheels of the server and of everything it depends on, from the build host's index
    # (and pip's cache): the build itself needs no network.
    "${PYTHON:-python3}" -m pip wheel -q --wheel-dir "$context/wheels" "$source_dir" \
      2>"$context/pip.log" || { cat "$context/pip.log" >&2; exit 1; }
    ;;
  postgresql)
    tag="${tag:-localhost/flightctl-db:latest}"
    cp "$here/Containerfile.postgresql" "$context/Containerfile"
    cp "$here/postgresql-entrypoint.sh" "$context/"
    ;;
  alertmanager)
    tag="${tag:-localhost/flightctl-alertmanager:latest}"
    cp "$here/Containerfile.alertmanager" "$context/Containerfile"
    ;;
  *) echo "unknown image $kind (server, postgresql or alertmanager)" >&2; exit 2 ;;
esac
# --format docker: the OCI image format has no HEALTHCHECK.
podman build --quiet --format docker --pull=missing --build-arg "BASE_IMAGE=$base" \
  --tag "$tag" "$context" >/dev/null
echo "$tag"
