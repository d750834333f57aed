"""The config drive: an ISO 9660 image labelled ``config-2`` that the guest mounts to learn who it is.

It holds OpenStack's layout, which cloud-init's ConfigDrive source and simpler guests read:
``openstack/latest/meta_data.json`` (uuid, name, hostname, availability zone, project, the server's
metadata and its public key), ``openstack/latest/user_data`` (the user's script or cloud-config, as
given, decoded from base64), ``network_data.json`` (the server's ports: links, static addresses, routes
and DNS, for a guest that configures its NICs without DHCP) and an empty ``vendor_data.json``; the same
under a dated version directory (``network_data.json`` from 2015-10-15, as OpenStack's),
for guests that ask for one. Personality files are listed in ``meta_data.json`` and their bytes
are under ``openstack/content/``. The metadata service at 169.254.169.254 serves the same files
(``compute_tasks.metadata_content`` renders both).
"""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from pathlib import Path

from compute_tasks import metadata_content
from compute_tasks.drivers.base import DriverError
from compute_tasks.private_files import private_file
from compute_tasks.rpc import BuildRequest

LABEL = "config-2"
VERSIONS = metadata_content.OPENSTACK_VERSIONS
TOOL_TIMEOUT_S = 60


def drive_files(request: BuildRequest) -> dict[str, bytes]:
    """The files of the request's config drive, by path inside the drive."""
    if request.metadata is None:
        raise ValueError("the request carries no metadata for a config drive")
    user_data = user_data_bytes(request.user_data) if request.user_data else None
    try:
        return metadata_content.openstack_files(request.metadata, user_data)
    except (binascii.Error, ValueError) as exc:
        raise DriverError(f"a personality file is not base64: {exc}") from None


def user_data_bytes(encoded: str) -> bytes:
    """The API takes user data base64-encoded and checked; a host refuses what is not."""
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DriverError(f"the user data is not base64: {exc}") from None


def write_config_drive(request: BuildRequest, target: Path) -> Path:
    """Build the request's config drive at ``target`` (an ISO image, replaced if it exists)."""
    tool = shutil.which("genisoimage")
    if tool is None:
        raise DriverError("genisoimage is not installed on this host: it cannot make config drives")
    with tempfile.TemporaryDirectory(prefix="config-drive-", dir=target.parent) as staging:
        root = Path(staging) / "drive"
        for relative, content in drive_files(request).items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        partial = Path(staging) / "drive.iso"
        argv = [tool, "-quiet", "-o", str(partial), "-V", LABEL, "-r", "-J", "-l", "-allow-lowercase"]
        argv += ["-allow-multidot", "-ldots", "-publisher", "compute cloud", str(root)]
        try:
            subprocess.run(argv, check=True, capture_output=True, timeout=TOOL_TIMEOUT_S)
        except subprocess.CalledProcessError as exc:
            raise DriverError(f"genisoimage failed: {exc.stderr.decode(errors='replace').strip()[-500:]}") from None
        except subprocess.TimeoutExpired:
            raise DriverError(f"genisoimage took more than {TOOL_TIMEOUT_S}s") from None
        # It holds the user data and the public keys.
        private_file(partial).replace(target)
    return target
