"""What Cinder needs to know to export a volume to this host: its connector, sent in every heartbeat.

The control plane hands it to Cinder when it reserves a volume for one of this host's instances, and
Cinder answers with the ``connection_info`` the host builds the libvirt disk from. The fields are the
ones os-brick's ``get_connector_properties`` gives Nova for a libvirt host without multipath.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path
from typing import Any

INITIATOR_FILE = Path("/etc/iscsi/initiatorname.iscsi")


def iscsi_initiator(path: Path = INITIATOR_FILE) -> str | None:
    """The host's iSCSI initiator name (open-iscsi's), or None when it has none."""
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "InitiatorName" and value.strip():
                return value.strip()
    except OSError:
        return None
    return None


def host_connector(*, host: str, ip: str, initiator_file: Path = INITIATOR_FILE) -> dict[str, Any]:
    connector: dict[str, Any] = {
        "platform": platform.machine() or "x86_64",
        "os_type": sys.platform,
        "ip": ip,
        "host": host,
        "multipath": False,
        "enforce_multipath": False,
        "do_local_attach": False,
    }
    initiator = iscsi_initiator(initiator_file)
    if initiator:
        connector["initiator"] = initiator
    return connector
