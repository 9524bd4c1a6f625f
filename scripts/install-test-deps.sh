#!/usr/bin/env bash
# Installs the system packages the test suite needs. As root it installs them with apt-get;
# otherwise it only checks and says what is missing. Safe to run repeatedly.
set -euo pipefail

# swtpm/swtpm-tools: the software TPM of the TPM attestation tests (swtpm_setup provisions EK
# certificates); libtss2-dev: headers tpm2-pytss builds against; tpm2-tools: for debugging;
# tpm2-openssl: the agent's TPM test checks that its TSS2 key file loads in standard tooling.
# git/openssh-server/apache2-utils: repository tests serve git over git daemon, smart HTTP and
# SSH on loopback and protect the loopback docker-registry with an htpasswd (bcrypt) file.
# podman/docker-registry/busybox-static: the device agent's application tests (containers pulled
# from a registry on loopback, images built from busybox); rpm: rpmbuild for the agent's RPM.
# prometheus-alertmanager: the alert exporter's tests post to a real Alertmanager on loopback.
# zbar-tools: zbarimg reads back the QR codes the agent draws on its console.
# chromium/chromium-driver: the web console's browser tests (tests/ui/), driven by Selenium
# through Debian's chromedriver (Selenium never downloads a browser or driver here).
# mmdebstrap: the deployment's base images are made from Debian's packages (no registry);
# systemd: systemd-analyze verifies the generated quadlet services and the agent's unit.
# haproxy/postgresql-15/iproute2: the multi-host test (tests/test_multihost.py) puts server
# nodes, a PostgreSQL primary and standby and HAProxy on hosts of their own (ip netns).
packages=(haproxy postgresql-15 iproute2 git openssh-server apache2-utils swtpm swtpm-tools tpm2-tools tpm2-openssl libtss2-dev podman docker-registry busybox-static rpm prometheus-alertmanager chromium chromium-driver zbar-tools mmdebstrap systemd)
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
# The single sign-on test logs in through a real OpenID Connect provider (oidc-provider, from
# the npm registry) run by the machine's Node.js.
oidc="$here/../tests/ui/oidc"
if [[ ! -d "$oidc/node_modules/oidc-provider" ]]; then
  command -v npm >/dev/null || { echo "the single sign-on test needs Node.js 20+ and npm" >&2; exit 1; }
  npm install --prefix "$oidc" --no-audit --no-fund --silent
fi
# Flight Control's published Python client (PyPI) runs against the server in its own virtual
# environment: its top-level package is named "flightctl", like ours.
client="$here/../tests/published_client"
if [[ ! -x "$client/.venv/bin/python" ]] || ! "$client/.venv/bin/python" -c "import flightctl.api.authprovider_api" 2>/dev/null; then
  python3 -m venv "$client/.venv"
  "$client/.venv/bin/pip" install -q -r "$client/requirements.txt"
fi
# On CI machines of this project's kind the shared preparation script also fixes podman (its
# cgroup and rlimit quirks there); FLIGHTCTL_PREPARE_HOST=0 opts out.
if [[ -f "$prepare" && $(id -u) -eq 0 && "${FLIGHTCTL_PREPARE_HOST:-1}" == 1 ]]; then
  bash "$prepare"
elif [[ $(id -u) -eq 0 && "${FLIGHTCTL_PREPARE_HOST:-1}" == 1 ]]; then
  # Without that script, the same two podman fixes (both idempotent): crun cannot raise
  # rlimits in such VMs, and hugetlb only on the v2 hierarchy makes crun refuse hybrid mode.
  if [[ ! -s /etc/containers/containers.conf ]]; then
    mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n' > /etc/containers/containers.conf
  fi
  if [[ -f /sys/fs/cgroup/unified/cgroup.controllers ]] && grep -qw hugetlb /sys/fs/cgroup/unified/cgroup.controllers; then
    mkdir -p /sys/fs/cgroup/hugetlb
    mountpoint -q /sys/fs/cgroup/hugetlb || mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
  fi
fi
# Podman's quadlet generator checks the deployment's units (tests/deploy/test_quadlets.py):
# the host's podman 4.4+ has it; for Debian 12's 4.3, the binary from Debian trixie's podman.
bash "$here/../tests/deploy/fetch-quadlet.sh"
