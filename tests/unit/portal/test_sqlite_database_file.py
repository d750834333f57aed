"""The single-machine SQLite database is readable by the cloud's user alone, whatever the umask."""

import os
import subprocess
import sys

import pytest
from django.db.utils import ConnectionHandler

from tests.file_modes import mode_of

pytestmark = pytest.mark.unit


@pytest.fixture
def sqlite_at(tmp_path, django_db_blocker):
    """Open, use and close a connection of the project's SQLite backend on a file in ``tmp_path``."""
    previous = os.umask(0o022)

    def use(name):
        path = tmp_path / name
        handler = ConnectionHandler({"default": {"ENGINE": "portal.db.sqlite3", "NAME": str(path)}})
        connection = handler["default"]
        with django_db_blocker.unblock():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("CREATE TABLE IF NOT EXISTS secrets (value TEXT)")
                    cursor.execute("INSERT INTO secrets VALUES ('hash')")
            finally:
                connection.close()
        return path

    yield use
    os.umask(previous)


def test_a_new_database_file_is_0600(sqlite_at):
    path = sqlite_at("cloud.sqlite3")

    assert mode_of(path) == 0o600
    assert path.stat().st_size > 0  # a real database, made in the empty file


def test_an_existing_database_file_is_tightened(sqlite_at, tmp_path):
    sqlite_at("cloud.sqlite3")
    (tmp_path / "cloud.sqlite3").chmod(0o644)  # made before the backend took care of it

    sqlite_at("cloud.sqlite3")

    assert mode_of(tmp_path / "cloud.sqlite3") == 0o600


def test_the_settings_choose_this_backend_for_sqlite(tmp_path):
    # In a fresh interpreter: the settings module reads the environment once, when it is imported.
    env = {**os.environ, "CLOUD_STATE_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    engine = subprocess.run(
        [sys.executable, "-c", "import portal.settings.base as s; print(s.DATABASES['default']['ENGINE'])"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()

    assert engine == "portal.db.sqlite3"
