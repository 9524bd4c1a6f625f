#!/usr/bin/env python
"""Django's command-line utility, on the server's own database.

Like every ``flightctl-server`` command it uses FLIGHTCTL_DATABASE_URL when set, else the
embedded PostgreSQL of the data directory (FLIGHTCTL_DATA_DIR, default
~/.local/share/flightctl), started for the command if ``serve`` is not running.
"""
import sys

if __name__ == "__main__":
    from flightctl.cli.database_commands import run_with_database

    run_with_database(sys.argv)
