"""The host's ``uptime`` line (time, time since boot, logged-in users, load averages), read from /proc and
utmp as the ``uptime`` command prints it; the compute API's hypervisor uptime shows it."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

_UTMP = Path("/var/run/utmp")
# glibc's struct utmp on 64-bit Linux: ut_type, ut_pid, ut_line, ut_id, ut_user, ut_host, ... (384 bytes).
_UTMP_RECORD = struct.Struct("hi32s4s32s256shhiii4i20x")
_USER_PROCESS = 7


def logged_in_users(utmp: Path = _UTMP) -> int:
    """Sessions of logged-in users in utmp (0 when there is no utmp, as in most containers)."""
    try:
        data = utmp.read_bytes()
    except OSError:
        return 0
    size = _UTMP_RECORD.size
    count = 0
    for offset in range(0, len(data) - size + 1, size):
        ut_type, _pid, _line, _id, user, *_rest = _UTMP_RECORD.unpack_from(data, offset)
        if ut_type == _USER_PROCESS and user.strip(b"\0"):
            count += 1
    return count


def format_uptime(now: float, up_seconds: float, users: int, load: tuple[float, float, float]) -> str:
    """`` 17:37:14 up 3 days,  2:33,  1 user,  load average: 0.33, 0.36, 0.34``"""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    minutes_up = int(up_seconds) // 60
    days, minutes = divmod(minutes_up, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    text = f" {clock} up "
    if days:
        text += f"{days} day{'s' if days != 1 else ''}, "
    text += f"{hours:2d}:{minutes:02d}, " if hours else f"{minutes} min, "
    text += f"{users:2d} user{'s' if users > 1 else ''},  "
    text += "load average: " + ", ".join(f"{value:.2f}" for value in load)
    return text


def uptime_line() -> str:
    """This host's uptime line now; empty when /proc cannot be read."""
    try:
        up_seconds = float(Path("/proc/uptime").read_text().split()[0])
        load = os.getloadavg()
    except (OSError, ValueError, IndexError):
        return ""
    return format_uptime(time.time(), up_seconds, logged_in_users(), load)
