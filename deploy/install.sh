#!/usr/bin/env bash
# Installs Flight Control's quadlet units and a default configuration (docs/deploy.md):
#   install.sh [--root DIR] [--with-alertmanager] [--external-database] [--no-secrets]
# Quadlet units go to DIR/etc/containers/systemd/ (where podman's generator reads rootful
# units), flightctl.target, a plain systemd unit, to DIR/etc/systemd/system/; the
# configuration to DIR/etc/flightctl/config.yaml, kept when it exists. Unless --no-secrets,
# the podman secrets the units use are created when missing: a random database password
# (flightctl-postgresql-password) and the URL the server connects with
# (flightctl-database-url). --external-database leaves the bundled database out (its units
# removed, the migration not waiting for it, no secrets created: the URL of your server is
# yours to create; docs/deploy.md step 11). --root (or DESTDIR) installs into a staging
# directory.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="${DESTDIR:-}"
alertmanager=0
secrets=1
external=0
while (($#)); do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --with-alertmanager) alertmanager=1; shift ;;
    --external-database) external=1; secrets=0; shift ;;
    --no-secrets) secrets=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
units="$root/etc/containers/systemd"
system="$root/etc/systemd/system"
config="$root/etc/flightctl"
install -d -m 0755 "$units" "$system" "$config" "$config/pki"
for unit in "$here"/quadlets/*; do
  name="$(basename "$unit")"
  [[ "$name" == flightctl-alertmanager.container && $alertmanager == 0 ]] && continue
  if [[ "$name" == flightctl-db.* && $external == 1 ]]; then
    rm -f "$units/$name"  # an earlier install's (its volume, the old data, is kept)
    continue
  fi
  if [[ "$name" == *.target ]]; then
    # The generator ignores targets and systemd does not read podman's directory.
    install -m 0644 "$unit" "$system/$name"
    rm -f "$units/$name"  # where releases before this one put it
  else
    install -m 0644 "$unit" "$units/$name"
  fi
  if [[ "$name" == flightctl-migrate.container && $external == 1 ]]; then
    # Out of its Requires= and After= lists, wherever it stands in them.
    sed -i -E 's/(=| )flightctl-db\.service( |$)/\1/' "$units/$name"
  fi
done
if [[ ! -e "$config/config.yaml" ]]; then
  host="$(hostname -f 2>/dev/null || hostname)"
  # Readable by the containers' user (uid 1001), not by everyone: it may hold secrets.
  install -m 0640 -g 1001 /dev/null "$config/config.yaml" 2>/dev/null ||
    install -m 0640 /dev/null "$config/config.yaml"
  cat > "$config/config.yaml" <<YAML
# Flight Control server settings (docs/configuration.md lists every one). The database URL
# is the podman secret flightctl-database-url; every other setting may be set here.
# What devices and users are told to connect to, and the names the server certificate has:
base_url: https://$host:3443
agent_endpoint: https://$host:7443
alt_names: [$host]
log_level: info
# Your own certificates instead of the generated PKI (files in /etc/flightctl/pki/, readable
# by uid 1001; docs/deploy.md):
# tls_cert_file: /etc/flightctl/pki/server.crt
# tls_key_file: /etc/flightctl/pki/server.key
# ca_cert_file: /etc/flightctl/pki/ca.crt
# ca_key_file: /etc/flightctl/pki/ca.key
YAML
fi
if ((secrets)); then
  if ! podman secret inspect flightctl-postgresql-password >/dev/null 2>&1; then
    password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    printf '%s' "$password" | podman secret create flightctl-postgresql-password - >/dev/null
    printf 'postgresql://postgres:%s@flightctl-db:5432/flightctl' "$password" |
      podman secret create flightctl-database-url - >/dev/null
    echo "Created the podman secrets flightctl-postgresql-password and flightctl-database-url"
  fi
fi
echo "Installed the units in $units and $system and the configuration in $config/config.yaml"
