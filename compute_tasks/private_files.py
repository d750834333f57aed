"""The cloud's files on a compute host are readable by their owner alone: files 0600, directories 0700.

Instance disks and config drives hold what users put in their guests, their keys and user data; cached
images can be private images; serial logs hold whatever a guest printed. QEMU runs as root on these hosts
(``user = "root"`` in the qemu.conf that scripts/start_services.sh writes), so it still opens them all.

Each place that makes one of these files or directories sets its mode itself, whatever the umask of the
process: the worker inherits its umask from whoever started it.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner may enter: made if missing (missing parents too, all 0700),
    its mode tightened if it exists."""
    path = Path(path)
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made by another thread in the meantime
            directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)
    # Only when it differs: this runs on every heartbeat, and a directory an operator made immutable
    # (chattr +i) refuses even a chmod to the mode it has.
    if stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Tighten a file some other program made (qemu-img, genisoimage) to 0600."""
    os.chmod(path, FILE_MODE)
    return path


def create_private_file(path: Path) -> Path:
    """Make ``path`` an empty 0600 file if it does not exist (another program fills it later), or
    tighten it if it does."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(path)


def open_private(path: Path, mode: str = "a") -> io.TextIOWrapper:
    """``open(path, mode)`` (a text mode) for a file that, if it is created, is 0600 from the start."""
    return open(path, mode, opener=lambda name, flags: os.open(name, flags, FILE_MODE))  # noqa: SIM115
