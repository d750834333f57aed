"""The helpers that keep the cloud's files on a host private, whatever the worker's umask."""

import pytest

from compute_tasks.private_files import create_private_file, open_private, private_dir, private_file
from tests.file_modes import mode_of

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("loose_umask")]


def test_private_dir_makes_missing_parents_private_too(tmp_path):
    tmp_path.chmod(0o755)

    made = private_dir(tmp_path / "state" / "instances" / "x")

    assert made.is_dir()
    for path in (tmp_path / "state", tmp_path / "state" / "instances", made):
        assert mode_of(path) == 0o700, path
    assert mode_of(tmp_path) == 0o755  # a parent that existed is not the cloud's to change


def test_private_dir_tightens_an_existing_directory(tmp_path):
    (tmp_path / "state").mkdir(mode=0o755)

    private_dir(tmp_path / "state")

    assert mode_of(tmp_path / "state") == 0o700


def test_files_made_by_others_and_files_made_here_are_0600(tmp_path):
    other = tmp_path / "disk"
    other.write_bytes(b"x")
    assert mode_of(other) == 0o644
    private_file(other)
    assert mode_of(other) == 0o600

    create_private_file(tmp_path / "console.log")
    assert mode_of(tmp_path / "console.log") == 0o600
    (tmp_path / "wide").write_bytes(b"kept")
    create_private_file(tmp_path / "wide")
    assert mode_of(tmp_path / "wide") == 0o600 and (tmp_path / "wide").read_bytes() == b"kept"

    with open_private(tmp_path / "lock") as lock:
        lock.write("")
    assert mode_of(tmp_path / "lock") == 0o600
