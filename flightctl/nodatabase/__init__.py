"""The database "engine" of a process that was given no database (see ``base.py``)."""
