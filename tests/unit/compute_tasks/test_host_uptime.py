"""The host's uptime line, formatted as ``uptime`` prints it, and logged-in users counted from utmp."""

import re
import struct
import time

import pytest

from compute_tasks.host_uptime import _UTMP_RECORD, format_uptime, logged_in_users, uptime_line

pytestmark = pytest.mark.unit

# The regular expression python-openstackclient parses the uptime with.
OSC_UPTIME = r"\s*(.+)\sup\s+(.+),\s+(.+)\susers?,\s+load average:\s(.+)"


@pytest.mark.parametrize(
    ("seconds", "users", "expected"),
    [
        (5 * 60, 0, "up 5 min,  0 user,  load average: 0.10, 0.20, 0.30"),
        (2 * 3600 + 33 * 60, 1, "up  2:33,  1 user,  load average: 0.10, 0.20, 0.30"),
        (86400 + 3600, 3, "up 1 day,  1:00,  3 users,  load average: 0.10, 0.20, 0.30"),
        (93 * 86400 + 18 * 3600 + 25 * 60, 12, "up 93 days, 18:25, 12 users,  load average: 0.10, 0.20, 0.30"),
    ],
)
def test_format_matches_uptime(seconds, users, expected):
    line = format_uptime(time.time(), seconds, users, (0.1, 0.2, 0.3))
    assert line.endswith(expected)
    match = re.match(OSC_UPTIME, line)
    assert match is not None and match.group(4) == "0.10, 0.20, 0.30"


def _record(ut_type: int, user: bytes) -> bytes:
    return _UTMP_RECORD.pack(ut_type, 1, b"pts/0", b"ts/0", user, b"host", 0, 0, 0, 0, 0, 0, 0, 0, 0)


def test_users_are_counted_from_utmp(tmp_path):
    utmp = tmp_path / "utmp"
    utmp.write_bytes(_record(2, b"reboot") + _record(7, b"alice") + _record(7, b"bob") + _record(8, b"carol"))
    assert _UTMP_RECORD.size == 384
    assert logged_in_users(utmp) == 2
    assert logged_in_users(tmp_path / "missing") == 0
    utmp.write_bytes(struct.pack("h", 7))  # a truncated record is ignored
    assert logged_in_users(utmp) == 0


def test_this_hosts_line_is_readable():
    assert " up " in uptime_line() and "load average: " in uptime_line()
