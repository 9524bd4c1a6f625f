"""The ``flightctl`` command line (being written; see the CLI issue)."""


def main():
    raise SystemExit("flightctl: not implemented yet")
