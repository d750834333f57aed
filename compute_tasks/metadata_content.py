"""What a guest learns about itself, and how a host's metadata request is signed: shared, pure code.

One rendering of OpenStack's ``meta_data.json`` serves both the config drive
(``compute_tasks.drivers.config_drive``) and the metadata service at 169.254.169.254 (the control plane's
``portal/services/metadata.py``). The service also answers the EC2-style ``latest/meta-data/`` basics
that cloud-init and simple guests read.

Personality files (compute API before 2.57) are delivered as Nova's libvirt driver delivers them when it
injects nothing into the disk: ``meta_data.json`` lists them under ``files`` as ``{"path", "content_path"}``,
and ``openstack/content/0000``, ``0001``, … hold their bytes, in the order the request gave them.

A metadata request travels guest → the proxy in its network's DHCP namespace → the host's metadata agent
→ the control plane. The agent signs it with the host's key over the method, the path, the network and
the guest's address (see ``request_body``); the control plane believes it only if that host signed it,
recently, once.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from compute_tasks import signing
from compute_tasks.rpc import InjectedFile, InstanceMetadata

ADDRESS = "169.254.169.254"
PORT = 80

# The signed request: its task name, the headers it travels in and how long it is believed.
SIGNED_TASK = "metadata"
AUTH_HEADER = "X-Metadata-Auth"
NETWORK_HEADER = "X-Metadata-Network"
ADDRESS_HEADER = "X-Metadata-Address"
MAX_AGE_SECONDS = 30.0
MAX_PATH = 1024

OPENSTACK_VERSIONS = ("2013-10-17", "2015-10-15", "latest")
_NETWORK_DATA_SINCE = "2015-10-15"
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2008-09-01", "2009-04-04", "latest")


def request_body(*, method: str, path: str, network_id: str, address: str) -> dict[str, str]:
    """What the host's signature covers (with the time and a nonce, which ``signing`` adds)."""
    return {"method": method.upper(), "path": path, "network_id": network_id, "address": address}


def signed_headers(
    signer: signing.Signer, *, method: str, path: str, network_id: str, address: str, now: float | None = None
) -> dict[str, str]:
    """The headers a host's metadata agent sends a guest's request to the control plane with."""
    body = request_body(method=method, path=path, network_id=network_id, address=address)
    auth = signer.sign(SIGNED_TASK, signing.CONTROL_PLANE, body, now=now)
    return {
        AUTH_HEADER: base64.b64encode(json.dumps(auth, separators=(",", ":")).encode()).decode(),
        NETWORK_HEADER: network_id,
        ADDRESS_HEADER: address,
    }


CONTENT_DIR = "content"


def content_path(index: int) -> str:
    """Where the ``index``-th personality file's bytes are, relative to ``openstack/``."""
    return f"{CONTENT_DIR}/{index:04d}"


def file_contents(injected: InjectedFile) -> bytes:
    """A personality file's bytes. The API took them as base64 the way Nova's does (characters outside
    the alphabet are skipped, bad padding is refused); ``binascii.Error`` for what is not base64."""
    return base64.b64decode(injected.contents)


def meta_data(metadata: InstanceMetadata) -> dict:
    """OpenStack's ``meta_data.json``."""
    public_keys = dict(sorted(metadata.public_keys.items()))
    files = {}
    if metadata.files:
        files["files"] = [
            {"path": injected.path, "content_path": "/" + content_path(index)}
            for index, injected in enumerate(metadata.files)
        ]
    return {
        "uuid": metadata.uuid,
        "name": metadata.name,
        "hostname": metadata.hostname,
        "availability_zone": metadata.availability_zone,
        "project_id": metadata.project_id,
        "launch_index": metadata.launch_index,
        "meta": dict(metadata.meta),
        "public_keys": public_keys,
        "keys": [{"name": name, "type": "ssh", "data": key} for name, key in public_keys.items()],
        "devices": [],
        **files,
    }


def openstack_files(metadata: InstanceMetadata, user_data: bytes | None) -> dict[str, bytes]:
    """The ``openstack/<version>/…`` files, by path: the config drive's and the service's."""
    meta = json.dumps(meta_data(metadata), sort_keys=True, indent=1).encode()
    network = json.dumps(metadata.network_data or {"links": [], "networks": [], "services": []}, indent=1).encode()
    files: dict[str, bytes] = {}
    for version in OPENSTACK_VERSIONS:
        files[f"openstack/{version}/meta_data.json"] = meta
        files[f"openstack/{version}/vendor_data.json"] = b"{}"
        if version == "latest" or version >= _NETWORK_DATA_SINCE:
            files[f"openstack/{version}/network_data.json"] = network
        if user_data is not None:
            files[f"openstack/{version}/user_data"] = user_data
    for index, injected in enumerate(metadata.files):
        files[f"openstack/{content_path(index)}"] = file_contents(injected)
    return files


@dataclass(frozen=True)
class Guest:
    """What the metadata service knows of the guest that asks."""

    metadata: InstanceMetadata
    user_data: bytes | None
    local_ipv4: str
    instance_type: str
    ami_id: str


def ec2_meta_data(guest: Guest) -> dict[str, object]:
    """EC2's ``meta-data`` tree: a dict is a directory, a string a file."""
    md = guest.metadata
    tree: dict[str, object] = {
        "ami-id": guest.ami_id,
        "ami-launch-index": str(md.launch_index),
        "hostname": md.hostname,
        "instance-id": md.uuid,
        "instance-type": guest.instance_type,
        "local-hostname": md.hostname,
        "local-ipv4": guest.local_ipv4,
        "placement": {"availability-zone": md.availability_zone},
    }
    keys = sorted(md.public_keys.items())
    if keys:
        tree["public-keys"] = {f"{i}": {"openssh-key": key + "\n"} for i, (_name, key) in enumerate(keys)}
    return tree


def answer(guest: Guest, path: str) -> tuple[bytes, str] | None:
    """The body and content type the service answers ``path`` with (relative to the service's root, as
    the guest asked it), or None for a path that does not exist."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return _listing([*EC2_VERSIONS, "openstack"])
    if parts[0] == "openstack":
        files = openstack_files(guest.metadata, guest.user_data)
        if len(parts) == 1:
            return _listing(list(OPENSTACK_VERSIONS))
        if len(parts) == 2:
            if parts[1] == CONTENT_DIR:
                return None  # the files are reached from meta_data.json; there is no listing (as in Nova)
            prefix = f"openstack/{parts[1]}/"
            names = sorted(name[len(prefix) :] for name in files if name.startswith(prefix))
            return _listing(names) if names else None
        body = files.get("/".join(parts)) if len(parts) == 3 else None
        if body is None:
            return None
        return body, "application/json" if parts[2].endswith(".json") else "application/octet-stream"
    if parts[0] not in EC2_VERSIONS:
        return None
    if len(parts) == 1:
        return _listing(["meta-data/", *(["user-data"] if guest.user_data is not None else [])])
    if parts[1] == "user-data" and len(parts) == 2:
        return (guest.user_data, "application/octet-stream") if guest.user_data is not None else None
    if parts[1] != "meta-data":
        return None
    node: object = ec2_meta_data(guest)
    for part in parts[2:]:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
        if node is None:
            return None
    if isinstance(node, str):
        return node.encode(), "text/plain"
    assert isinstance(node, dict)
    if parts[2:] == ["public-keys"]:
        names = [name for name, _key in sorted(guest.metadata.public_keys.items())]
        return _listing([f"{i}={name}" for i, name in enumerate(names)])
    return _listing([f"{name}/" if isinstance(value, dict) else name for name, value in sorted(node.items())])


def _listing(names: list[str]) -> tuple[bytes, str]:
    return "\n".join(names).encode(), "text/plain"
