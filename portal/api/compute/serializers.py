"""Input validation for server requests. Output shapes live in ``server_views`` as plain dicts per microversion."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re

from rest_framework import serializers

from portal.ids import is_uuid
from portal.services.instance_ports import NetworkRequest

from .networks import servers_network_id

_NAME_RE = re.compile(r"^\S(.*\S)?$", re.DOTALL)


# The compute API's metadata keys: letters, digits, '-', '_', ':', '.' and spaces.
_METADATA_KEY_RE = re.compile(r"^[a-zA-Z0-9\-_:. ]{1,255}$")


class StrictDictField(serializers.DictField):
    """Server metadata: string keys of the compute API's form, string values of at most 255 characters."""

    child = serializers.CharField(max_length=255, allow_blank=True, trim_whitespace=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            for key, item in data.items():
                if not isinstance(item, str):
                    raise serializers.ValidationError(f"the value of metadata key {str(key)[:40]!r} must be a string")
        value = super().to_internal_value(data)
        for key in value:
            if not _METADATA_KEY_RE.match(key):
                raise serializers.ValidationError(
                    f"metadata key {key[:40]!r} must be 1 to 255 letters, digits, spaces or '-_:.'"
                )
        return value


class StringField(serializers.CharField):
    """A string and only a string: the compute API's schemas refuse a number where a name is asked for
    (DRF's CharField would turn 12345 into "12345")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class AccessAddressField(serializers.CharField):
    """``accessIPv4``/``accessIPv6``: an address of that version, in any form Python reads (IPv6 written in
    full with an embedded IPv4 part too, which is longer than Django's own check allows), stored and shown
    compressed; an empty string clears it."""

    def __init__(self, *, version: int, **kwargs):
        self.version = version
        super().__init__(allow_blank=True, max_length=64, **kwargs)

    def to_internal_value(self, data) -> str:
        text = super().to_internal_value(data).strip()
        if not text:
            return ""
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            address = None
        if address is None or address.version != self.version:
            raise serializers.ValidationError(f"{text[:64]!r} is not a valid IPv{self.version} address.")
        return address.compressed


def _flexible_bool(value) -> bool:
    """A boolean as the compute API accepts it: true/false, or a string such as "True", "on", "1"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "t", "on", "yes", "y", "1"):
            return True
        if lowered in ("false", "f", "off", "no", "n", "0", ""):
            return False
    raise serializers.ValidationError("must be a boolean")


def _base64(value):
    if value is None:
        return value
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise serializers.ValidationError("must be base64 encoded") from None
    return value


def _personality(value) -> list[dict[str, str]]:
    """Personality files as Nova's schema takes them: a list of ``{"path", "contents"}`` objects, the
    contents base64 (decoded as Nova decodes them: characters outside the alphabet are skipped)."""
    if not isinstance(value, list):
        raise serializers.ValidationError("must be a list of {'path', 'contents'} objects")
    files = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"path", "contents"}:
            raise serializers.ValidationError("each file must be an object with only 'path' and 'contents'")
        path, contents = item.get("path"), item.get("contents")
        if not isinstance(path, str) or not isinstance(contents, str):
            raise serializers.ValidationError("each file needs a string 'path' and string 'contents'")
        try:
            base64.b64decode(contents)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError(f"the contents of {path[:255]} are not base64") from None
        files.append({"path": path, "contents": contents})
    return files


def _server_name(value: str) -> str:
    if not _NAME_RE.match(value) or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise serializers.ValidationError("must not be empty, start or end with spaces, or hold control characters")
    return value


# ``hostname`` (2.90): a DNS label of 2 to 63 characters; from 2.94 a fully qualified name of up to 255,
# with the characters the compute API allows there.
_HOSTNAME_RE = re.compile(r"^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$")
_FQDN_RE = re.compile(r"^[a-zA-Z0-9-._]*$")


def _hostname(value: str, version) -> str:
    if version is not None and version >= "2.94":
        if not 1 <= len(value) <= 255 or not _FQDN_RE.match(value):
            raise serializers.ValidationError("must be 1 to 255 letters, digits, '-', '.' or '_'")
    elif not 2 <= len(value) <= 63 or not _HOSTNAME_RE.match(value):
        raise serializers.ValidationError(
            "must be 2 to 63 letters, digits or '-', starting and ending with a letter or digit"
        )
    return value


def _description(value):
    if value is not None and any(ord(ch) < 32 and ch not in "\t\n\r" or ord(ch) == 127 for ch in value):
        raise serializers.ValidationError("must not hold control characters")
    return value


class VersionedSerializer(serializers.Serializer):
    """Fields that exist only from a microversion on are refused, as unknown ones, before it."""

    since: dict[str, str] = {}
    until: dict[str, str] = {}  # the last microversion that still takes the field

    def validate(self, attrs):
        version = self.context.get("api_version")
        if version is not None:
            for field, first in self.since.items():
                if field in self.initial_data and version < first:
                    raise serializers.ValidationError({field: f"is not allowed before microversion {first}"})
            for field, last in self.until.items():
                if field in self.initial_data and version > last:
                    raise serializers.ValidationError({field: f"is not allowed after microversion {last}"})
        return attrs


class BlockDeviceMappingSerializer(serializers.Serializer):
    uuid = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    source_type = serializers.ChoiceField(choices=["image", "volume", "snapshot", "blank"], required=False)
    destination_type = serializers.ChoiceField(choices=["local", "volume"], required=False)
    boot_index = serializers.IntegerField(required=False, allow_null=True, min_value=-1, max_value=2**31 - 1)
    volume_size = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**31 - 1)
    delete_on_termination = serializers.BooleanField(required=False)
    tag = serializers.CharField(required=False, max_length=60)


def _boot_volumes(mappings: list[dict]) -> list[dict]:
    """The ``block_device_mapping_v2`` entries whose destination is a volume, checked for what each needs."""
    volumes = []
    for index, bdm in enumerate(mappings):
        where = f"block_device_mapping_v2[{index}]"
        source = bdm.get("source_type") or ("volume" if bdm.get("destination_type") == "volume" else "image")
        destination = bdm.get("destination_type") or ("volume" if source == "volume" else "local")
        boot_index = bdm.get("boot_index")
        boot_index = None if boot_index is not None and boot_index < 0 else boot_index
        if source == "snapshot":
            raise serializers.ValidationError({where: "booting from a volume snapshot is not supported"})
        if destination != "volume":
            if source == "volume":
                raise serializers.ValidationError({where: "a volume source needs destination_type 'volume'"})
            continue
        if source in ("volume", "image") and not bdm.get("uuid"):
            raise serializers.ValidationError({where: f"a {source} source needs the {source}'s uuid"})
        if source in ("image", "blank") and not bdm.get("volume_size"):
            raise serializers.ValidationError(
                {where: f"Images with destination_type 'volume' need to have a non-zero size specified ({source})"}
            )
        if source == "blank" and boot_index == 0:
            raise serializers.ValidationError({where: "a blank volume cannot be the boot disk"})
        volumes.append(
            {
                "source_type": source,
                "uuid": str(bdm.get("uuid") or "").rstrip("/").rsplit("/", 1)[-1],
                "boot_index": boot_index,
                "volume_size": bdm.get("volume_size"),
                "delete_on_termination": bool(bdm.get("delete_on_termination", False)),
                "tag": bdm.get("tag"),
            }
        )
    if sum(1 for volume in volumes if volume["boot_index"] == 0) > 1:
        raise serializers.ValidationError({"block_device_mapping_v2": "only one device can have boot_index 0"})
    return volumes


class ServerCreateSerializer(VersionedSerializer):
    since = {
        "description": "2.19",
        "tags": "2.52",
        "trusted_image_certificates": "2.63",
        "host": "2.74",
        "hypervisor_hostname": "2.74",
        "hostname": "2.90",
    }
    until = {"personality": "2.56"}

    hostname = serializers.CharField(required=False, max_length=1024, trim_whitespace=False)

    host = serializers.CharField(required=False, max_length=255)
    hypervisor_hostname = serializers.CharField(required=False, max_length=255)

    name = StringField(max_length=255, trim_whitespace=False)
    imageRef = serializers.CharField(required=False, allow_blank=True, max_length=1024)  # noqa: N815
    flavorRef = serializers.CharField(max_length=1024)  # noqa: N815
    networks = serializers.JSONField(required=False)
    block_device_mapping_v2 = BlockDeviceMappingSerializer(many=True, required=False)
    user_data = serializers.CharField(required=False, allow_null=True, max_length=65535)
    key_name = serializers.CharField(required=False, allow_null=True, max_length=255)
    metadata = StrictDictField(required=False)
    description = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=255, trim_whitespace=False
    )
    availability_zone = serializers.CharField(required=False, allow_null=True, max_length=255)
    min_count = serializers.IntegerField(required=False, min_value=1, max_value=100)
    max_count = serializers.IntegerField(required=False, min_value=1, max_value=100)
    return_reservation_id = serializers.BooleanField(required=False)
    config_drive = serializers.JSONField(required=False)
    tags = serializers.ListField(child=serializers.JSONField(), required=False, max_length=50)
    personality = serializers.JSONField(required=False)
    trusted_image_certificates = serializers.JSONField(required=False)
    security_groups = serializers.ListField(child=serializers.DictField(), required=False)
    adminPass = serializers.CharField(required=False, max_length=255)  # noqa: N815
    accessIPv4 = AccessAddressField(required=False, version=4)  # noqa: N815
    accessIPv6 = AccessAddressField(required=False, version=6)  # noqa: N815

    def validate_name(self, value: str) -> str:
        return _server_name(value)

    def validate_description(self, value):
        return _description(value)

    def validate_hostname(self, value: str) -> str:
        return _hostname(value, self.context.get("api_version"))

    def validate_config_drive(self, value) -> bool:
        return _flexible_bool(value)

    def validate_personality(self, value):
        return _personality(value)

    def validate_trusted_image_certificates(self, value):
        if value:
            raise serializers.ValidationError("image signature verification is not available in this cloud")
        return value

    def validate_networks(self, value):
        if value in ("auto", "none"):
            return value
        if isinstance(value, list):
            if not value:
                return "none"
            return _network_requests(value)
        raise serializers.ValidationError("must be 'auto', 'none' or a list of networks")

    def validate_user_data(self, value):
        return _base64(value)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("min_count", 1) > attrs.get("max_count", attrs.get("min_count", 1)):
            raise serializers.ValidationError("min_count must be <= max_count")
        if attrs.get("hostname") and attrs.get("max_count", 1) > 1:
            raise serializers.ValidationError("Unable to allocate a single hostname to multiple instances")
        requests = attrs.get("networks")
        if isinstance(requests, tuple) and max(attrs.get("min_count", 1), attrs.get("max_count", 1)) > 1:
            if any(r.port_id for r in requests):
                raise serializers.ValidationError(
                    "Unable to launch multiple instances with a single configured port ID. Please launch your "
                    "instance one by one with different ports."
                )
            if any(r.fixed_ip for r in requests):
                raise serializers.ValidationError("max_count cannot be greater than 1 if an fixed_ip is specified.")
        version = self.context.get("api_version")
        if version is not None and version >= "2.37" and "networks" not in attrs:
            raise serializers.ValidationError({"networks": "is required since microversion 2.37"})
        image_ref = attrs.get("imageRef") or ""
        attrs["boot_volumes"] = boot_volumes = _boot_volumes(attrs.get("block_device_mapping_v2", []))
        if any(volume.get("boot_index") == 0 for volume in boot_volumes):
            # The root disk is a volume: the server has no image of its own (imageRef, if any, is ignored).
            attrs["imageRef"] = ""
            return attrs
        for bdm in attrs.get("block_device_mapping_v2", []):
            if bdm.get("destination_type") == "volume":
                continue
            if bdm.get("source_type") == "image" and bdm.get("boot_index") in (0, None):
                if image_ref and bdm.get("uuid") and bdm["uuid"] != image_ref.rstrip("/").rsplit("/", 1)[-1]:
                    raise serializers.ValidationError({"block_device_mapping_v2": "image does not match imageRef"})
                image_ref = image_ref or bdm.get("uuid") or ""
        if not image_ref:
            raise serializers.ValidationError({"imageRef": "is required"})
        attrs["imageRef"] = image_ref.rstrip("/").rsplit("/", 1)[-1]
        return attrs


class ServerUpdateSerializer(VersionedSerializer):
    since = {"description": "2.19", "hostname": "2.90", "pinned_availability_zone": "2.104"}

    name = StringField(required=False, max_length=255, trim_whitespace=False)
    hostname = serializers.CharField(required=False, max_length=1024, trim_whitespace=False)
    pinned_availability_zone = serializers.CharField(required=False, allow_null=True, max_length=255)
    description = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=255, trim_whitespace=False
    )
    accessIPv4 = AccessAddressField(required=False, version=4)  # noqa: N815
    accessIPv6 = AccessAddressField(required=False, version=6)  # noqa: N815

    def validate_name(self, value: str) -> str:
        return _server_name(value)

    def validate_description(self, value):
        return _description(value)

    def validate_hostname(self, value: str) -> str:
        return _hostname(value, self.context.get("api_version"))


class RebuildSerializer(VersionedSerializer):
    since = {
        "description": "2.19",
        "key_name": "2.54",
        "user_data": "2.57",
        "trusted_image_certificates": "2.63",
        "hostname": "2.90",
    }
    until = {"personality": "2.56"}

    imageRef = serializers.CharField(max_length=1024)  # noqa: N815
    name = StringField(required=False, max_length=255, trim_whitespace=False)
    hostname = serializers.CharField(required=False, max_length=1024, trim_whitespace=False)
    metadata = StrictDictField(required=False)
    description = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=255, trim_whitespace=False
    )
    key_name = serializers.CharField(required=False, allow_null=True, max_length=255)
    user_data = serializers.CharField(required=False, allow_null=True, max_length=65535)
    adminPass = serializers.CharField(required=False, max_length=255)  # noqa: N815
    preserve_ephemeral = serializers.BooleanField(required=False)
    accessIPv4 = AccessAddressField(required=False, version=4)  # noqa: N815
    accessIPv6 = AccessAddressField(required=False, version=6)  # noqa: N815
    personality = serializers.JSONField(required=False)
    trusted_image_certificates = serializers.JSONField(required=False)

    def validate_name(self, value: str) -> str:
        return _server_name(value)

    def validate_description(self, value):
        return _description(value)

    def validate_user_data(self, value):
        return _base64(value)

    def validate_hostname(self, value: str) -> str:
        return _hostname(value, self.context.get("api_version"))

    def validate_personality(self, value):
        return _personality(value)

    def validate_trusted_image_certificates(self, value):
        if value:
            raise serializers.ValidationError("image signature verification is not available in this cloud")
        return value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["imageRef"] = attrs["imageRef"].rstrip("/").rsplit("/", 1)[-1]
        return attrs


class CreateImageSerializer(serializers.Serializer):
    name = StringField(max_length=255, trim_whitespace=False)
    metadata = StrictDictField(required=False)

    def validate_name(self, value: str) -> str:
        return _server_name(value)


class CreateBackupSerializer(CreateImageSerializer):
    backup_type = StringField(allow_blank=True, trim_whitespace=False)
    rotation = serializers.JSONField()

    def validate_rotation(self, value) -> int:
        # An integer, or a string of digits, at least 0 (the compute API's non-negative integer).
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise serializers.ValidationError("must be a non-negative integer")
        if isinstance(value, str) and not re.fullmatch(r"[0-9]+", value):
            raise serializers.ValidationError("must be a non-negative integer")
        value = int(value)
        if value < 0:
            raise serializers.ValidationError("must be a non-negative integer")
        return min(value, 2**31 - 1)


class LockSerializer(serializers.Serializer):
    locked_reason = serializers.CharField(required=False, max_length=255, allow_blank=True, trim_whitespace=False)


class ResetStateSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["active", "error"])


class ConsoleOutputSerializer(serializers.Serializer):
    length = serializers.JSONField(required=False, allow_null=True)

    def validate_length(self, value):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise serializers.ValidationError("must be an integer")
        if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value):
            raise serializers.ValidationError("must be an integer")
        number = int(value)
        if number < -1:
            raise serializers.ValidationError("must be -1 (everything) or more")
        return None if number == -1 else number


class MetadataBodySerializer(serializers.Serializer):
    metadata = StrictDictField()


class MetaItemSerializer(serializers.Serializer):
    meta = StrictDictField()

    def validate_meta(self, value):
        if len(value) != 1:
            raise serializers.ValidationError("must hold exactly one key")
        return value


class TagsBodySerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.JSONField(), max_length=50)


class RebootSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["SOFT", "HARD", "soft", "hard"])


class RemoteConsoleSerializer(serializers.Serializer):
    protocol = serializers.ChoiceField(choices=["vnc", "spice", "serial", "rdp", "mks"])
    # ``spice-direct`` exists from 2.99 (the view refuses it before).
    type = serializers.ChoiceField(
        choices=["novnc", "xvpvnc", "spice-html5", "spice-direct", "serial", "rdp-html5", "webmks"]
    )


class ResizeSerializer(serializers.Serializer):
    flavorRef = serializers.CharField(max_length=255)  # noqa: N815 - the API's name


class MigrateSerializer(serializers.Serializer):
    host = serializers.CharField(required=False, allow_null=True, max_length=255)


class RescueSerializer(serializers.Serializer):
    adminPass = serializers.CharField(required=False, max_length=255, trim_whitespace=False)  # noqa: N815
    rescue_image_ref = serializers.CharField(required=False, max_length=255)


class LiveMigrateSerializer(serializers.Serializer):
    host = serializers.CharField(required=True, allow_null=True, max_length=255)
    # "auto" from 2.25; a boolean (or its string form) before.
    block_migration = serializers.JSONField()
    disk_over_commit = serializers.JSONField(required=False)
    force = serializers.BooleanField(required=False)


class EvacuateSerializer(serializers.Serializer):
    host = serializers.CharField(required=False, allow_null=True, max_length=255)
    onSharedStorage = serializers.BooleanField(required=False)  # noqa: N815 - until 2.14
    adminPass = serializers.CharField(required=False, max_length=255, trim_whitespace=False)  # noqa: N815
    force = serializers.BooleanField(required=False)


def _network_requests(requested: list) -> tuple | str:
    """The ``networks`` list as requests for the network controller: ``{"uuid"}`` (with ``fixed_ip``, an
    address on it) or ``{"port"}``. Naming the ``os-networks`` proxy's network is asking for ``auto``."""
    requests = []
    for entry in requested:
        if not isinstance(entry, dict):
            raise serializers.ValidationError("each network must be an object")
        unknown = sorted(set(entry) - {"uuid", "port", "fixed_ip", "tag"})
        if unknown:
            raise serializers.ValidationError(f"additional properties are not allowed ({', '.join(unknown)})")
        for key in ("uuid", "port", "fixed_ip", "tag"):
            if key in entry and entry[key] is not None and not isinstance(entry[key], str):
                raise serializers.ValidationError(f"{key} must be a string")
        port, network, fixed_ip = entry.get("port") or "", entry.get("uuid") or "", entry.get("fixed_ip") or ""
        for value, what in ((port, "port"), (network, "uuid")):
            if value and not is_uuid(value):
                raise serializers.ValidationError(f"Bad networks format: {what} {value[:64]} is not a UUID")
        if not port and not network:
            raise serializers.ValidationError("Bad networks format: each network needs a uuid or a port")
        if fixed_ip:
            try:
                ipaddress.ip_address(fixed_ip)
            except ValueError:
                raise serializers.ValidationError(f"Invalid fixed IP address ({fixed_ip[:64]})") from None
        if network == servers_network_id() and not port and not fixed_ip:
            if len(requested) > 1:
                raise serializers.ValidationError("a server has one NIC on the default network: name it once")
            return "auto"
        requests.append(
            NetworkRequest(
                network_id="" if port else network, port_id=port, fixed_ip=fixed_ip, tag=entry.get("tag") or ""
            )
        )
    ports = [r.port_id for r in requests if r.port_id]
    if len(ports) != len(set(ports)):
        raise serializers.ValidationError("Bad networks format: a port is named twice")
    return tuple(requests)
