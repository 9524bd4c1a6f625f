#!/bin/sh
# The "external" PostgreSQL of docs/deploy.md step 11 in tests/deploy/test_deploy_guide.py: a
# PostgreSQL 15 server of its own (the project's image, localhost/flightctl-db), outside the
# deployment's units, network and volumes, that serves TLS with a certificate of its own CA, as
# a database server elsewhere would (any release's image: TLS is turned on by ALTER SYSTEM).
# Its address is fixed so that the certificate can name it before the server starts
# (verify-full checks the address against it).
#   external-postgresql.sh start DIR   start it; print the guide's DB_HOST, DB_ADMIN_URL and
#                                      DB_CA as shell assignments (DIR: its CA and keys)
#   external-postgresql.sh remove      remove its container, volume and network
set -eu
name=flightctl-test-external-db
network=flightctl-test-external
subnet=10.89.254.0/24
address=10.89.254.10
image=localhost/flightctl-db:latest

if [ "${1:-}" = remove ]; then
  podman rm -f -i -t 5 "$name" >/dev/null
  podman volume rm -f "$name" >/dev/null
  podman network rm -f "$network" >/dev/null 2>&1 || true
  exit 0
fi
[ "${1:-}" = start ] && [ -n "${2:-}" ] || { echo "usage: $0 start DIR | remove" >&2; exit 2; }
dir=$2
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=External PostgreSQL test CA" -keyout "$dir/ca.key" -out "$dir/ca.crt" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$address" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$address" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 30 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$dir/password"
# The key and the password file belong to the image's postgres user (PostgreSQL refuses a key
# others can read).
uid=$(podman run --rm --entrypoint id "$image" -u 2>/dev/null)
chown "$uid" "$dir/server.key" "$dir/password"
chmod 0600 "$dir/server.key" "$dir/password"
# Without a name server: the server is reached by its address. (What broke the guide's step
# 11 on 2026-12-04 was not this network but podman's name server after the step stopped two
# of the deployment's containers: flightctl/backup.py, TRANSIENT_WAIT.)
podman network create --disable-dns --subnet "$subnet" "$network" >/dev/null
podman run -d --name "$name" --network "$network" --ip "$address" \
  -v "$name:/var/lib/postgresql/data:Z" -v "$dir:/tls:ro,z" \
  -e POSTGRES_PASSWORD_FILE=/tls/password -e POSTGRES_DB=unused "$image" >/dev/null 2>&1
tries=0
until podman exec "$name" pg_isready -q -h 127.0.0.1 2>/dev/null; do
  tries=$((tries + 1))
  [ "$tries" -lt 120 ] || { podman logs "$name" >&2; exit 1; }
  sleep 0.5
done
# TLS on (a reload is enough for these settings), as the superuser over the local socket.
podman exec "$name" psql -q -v ON_ERROR_STOP=1 \
  -c "ALTER SYSTEM SET ssl_cert_file = '/tls/server.crt'" \
  -c "ALTER SYSTEM SET ssl_key_file = '/tls/server.key'" \
  -c "ALTER SYSTEM SET ssl = on" -c "SELECT pg_reload_conf()" >/dev/null
url="postgresql://postgres:$(cat "$dir/password")@$address:5432/postgres?sslmode=verify-full&sslrootcert=$dir/ca.crt"
tries=0
until psql "$url" -tAc 'SHOW ssl' 2>/dev/null | grep -qx on; do
  tries=$((tries + 1))
  [ "$tries" -lt 20 ] || { podman logs "$name" >&2; exit 1; }
  sleep 0.5
done
echo "DB_HOST=$address"
echo "DB_ADMIN_URL='$url'"
echo "DB_CA=$dir/ca.crt"
