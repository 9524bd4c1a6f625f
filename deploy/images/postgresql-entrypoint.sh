#!/bin/sh
# First start: initialise $PGDATA with the superuser password from $POSTGRES_PASSWORD_FILE (a
# podman secret) and create $POSTGRES_DB; every start: run PostgreSQL in the foreground.
set -eu
db="${POSTGRES_DB:-flightctl}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  password_file="${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE must name the password file}"
  [ -s "$password_file" ] || { echo "$password_file is empty or missing" >&2; exit 1; }
  initdb --username=postgres --pwfile="$password_file" --auth-local=peer \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  # Clients come over the container network: passwords are required, never trusted.
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -w -o "-c listen_addresses=''" start >/dev/null
  createdb "$db"
  pg_ctl -w -m fast stop >/dev/null
  echo "initialised $PGDATA with database $db" >&2
fi
exec postgres -c listen_addresses='*' -c max_connections="${POSTGRES_MAX_CONNECTIONS:-200}"
