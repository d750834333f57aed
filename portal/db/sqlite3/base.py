"""Django's SQLite backend, except that the database file is 0600.

SQLite makes a missing database file with the process's umask, 0644 under most shells, and that one file
holds the whole cloud: password hashes, token digests, every project's servers and user data. So the file
is made (or tightened to) 0600 before each connection opens it; SQLite gives its journal and WAL files the
mode of the database file, which covers them too. Settings select this backend in place of Django's.
"""

from __future__ import annotations

import os
from typing import Any

from django.db.backends.sqlite3 import base

DATABASE_FILE_MODE = 0o600


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        make_private(str(conn_params["database"]))
        return super().get_new_connection(conn_params)


def make_private(name: str) -> None:
    """Create the database file ``name`` empty with mode 0600 (SQLite takes an empty file for a new
    database), or tighten the mode of the one that exists. In-memory databases have no file."""
    if not name or name == ":memory:" or name.startswith("file:"):
        return
    fd = os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, DATABASE_FILE_MODE)
    try:
        os.fchmod(fd, DATABASE_FILE_MODE)
    finally:
        os.close(fd)
