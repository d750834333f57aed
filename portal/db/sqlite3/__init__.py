"""Django's SQLite backend, with a database file that only the cloud's user can read."""
