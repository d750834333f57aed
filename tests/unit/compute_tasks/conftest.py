import os

import pytest


@pytest.fixture
def loose_umask():
    """The umask most shells give: files 0644, directories 0755 unless the code says otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)
