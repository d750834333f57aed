"""Permission bits of the files the tests check for privacy."""

import os


def mode_of(path) -> int:
    return os.stat(path).st_mode & 0o777
