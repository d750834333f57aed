"""Every write to images and their files, and the signed URLs compute hosts download them through.

Files live at ``CLOUD['IMAGE_DIR']/<image id>``. An upload streams into a temporary file in the same
directory and is renamed into place only once it is complete and its checksums are known, so a reader
never sees half an image. The ``queued -> saving`` transition, taken under a row lock, is what lets
exactly one upload proceed when two race for the same image.

``ctx=None`` means a trusted caller with no request behind it (a management command): no policy checks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import struct
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.auth.context import RequestContext
from portal.models import Image, Project
from portal.selectors import quotas as quota_selectors

from . import quotas

log = logging.getLogger(__name__)

DISK_FORMATS = ("ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop")
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")

# Attributes the service manages itself; clients may read them but never write them.
READ_ONLY_ATTRIBUTES = frozenset(
    {
        "id",
        "status",
        "checksum",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "os_hash_algo",
        "os_hash_value",
        "self",
        "file",
        "schema",
        "direct_url",
        "locations",
        "stores",
    }
)
WRITABLE_ATTRIBUTES = frozenset(
    {
        "name",
        "visibility",
        "min_disk",
        "min_ram",
        "protected",
        "tags",
        "disk_format",
        "container_format",
        "owner",
        "os_hidden",
    }
)
CORE_ATTRIBUTES = READ_ONLY_ATTRIBUTES | WRITABLE_ATTRIBUTES
RESERVED_ATTRIBUTES = frozenset({"location", "deleted", "deleted_at"})
RESERVED_PREFIX = "os_glance"

MAX_TAGS = 128
MAX_PROPERTIES = 128
MAX_KEY_LENGTH = 255
MAX_PROPERTY_VALUE_LENGTH = 65535
MAX_INT = 2**31 - 1

HASH_ALGO = "sha256"
CHUNK_SIZE = 1024 * 1024
IMAGE_DIR_MODE = 0o700
_DOWNLOAD_SALT = "portal.images.download"


class ImageError(Exception):
    """The image service refuses a request; the subclass says why."""


class InvalidImage(ImageError):
    """The request is malformed or asks for an impossible value."""


class ImageForbidden(ImageError):
    """The caller may see the image but not do this to it."""


class ImageNotFound(ImageError):
    """The image (or the part of it asked for) does not exist."""


class ImageConflict(ImageError):
    """The image's current state does not allow this."""


class ImageTooLarge(ImageError):
    """The data or metadata exceed a limit."""


class ImageQuotaExceeded(ImageTooLarge):
    """The owner project's image count or image size quota would be exceeded (413, as Glance answers)."""


class DownloadDenied(ImageError):
    """A signed download URL is malformed, tampered with, expired or stale."""


@dataclass(frozen=True)
class ImageChange:
    """One operation of a JSON-patch document: ``op`` is add, replace or remove; ``attribute`` the key."""

    op: str
    attribute: str
    value: Any = None


# --- paths and policy ----------------------------------------------------------------------------------


def image_dir() -> Path:
    return Path(settings.CLOUD["IMAGE_DIR"])


def image_file_path(image: Image) -> Path:
    return image_dir() / str(image.id)


def _check_can_modify(ctx: RequestContext | None, image: Image) -> None:
    if ctx is None or ctx.is_admin:
        return
    if not ctx.can_write:
        raise ImageForbidden("Policy doesn't allow this operation to be performed: your role is read-only.")
    if image.owner_id != ctx.project.pk:
        raise ImageForbidden("You are not permitted to modify an image owned by another project.")


def _locked(image_id) -> Image:
    image = Image.objects.select_for_update().filter(pk=image_id).exclude(status=Image.Status.DELETED).first()
    if image is None:
        raise ImageNotFound(f"No image found with ID {image_id}")
    return image


# --- values --------------------------------------------------------------------------------------------


def _check_attribute_name(key: Any) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidImage("Property names must be non-empty strings.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidImage(f"Property names may be at most {MAX_KEY_LENGTH} characters long.")
    if key in READ_ONLY_ATTRIBUTES:
        raise ImageForbidden(f"Attribute '{key}' is read-only.")
    if key in RESERVED_ATTRIBUTES or key.startswith(RESERVED_PREFIX):
        raise ImageForbidden(f"Attribute '{key}' is reserved.")


def _int_value(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidImage(f"{name} must be an integer.")
    if not 0 <= value <= MAX_INT:
        raise InvalidImage(f"{name} must be between 0 and {MAX_INT}.")
    return value


def _bool_value(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidImage(f"{name} must be a boolean.")
    return value


def _choice_value(name: str, value: Any, choices: Iterable[str], *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or value not in choices:
        raise InvalidImage(f"Invalid value {str(value)[:40]!r} for {name}: expected one of {', '.join(choices)}.")
    return value


def _tags_value(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise InvalidImage("tags must be a list of strings.")
    tags: list[str] = []
    for tag in value:
        if not isinstance(tag, str) or not tag or len(tag) > 255:
            raise InvalidImage("Each tag must be a string of 1 to 255 characters.")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise ImageTooLarge(f"An image may have at most {MAX_TAGS} tags.")
    return tags


def _property_value(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidImage(f"The value of property '{key}' must be a string.")
    if len(value) > MAX_PROPERTY_VALUE_LENGTH:
        raise InvalidImage(f"The value of property '{key}' is too long.")
    return value


def _owner_value(ctx: RequestContext | None, value: Any) -> str | None:
    if value is None:
        if ctx is not None and not ctx.is_admin:
            raise ImageForbidden("Only admins may create or keep images without an owner.")
        return None
    if not isinstance(value, str):
        raise InvalidImage("owner must be a project id.")
    if ctx is not None and not ctx.is_admin and value != ctx.project.pk:
        raise ImageForbidden(f"You are not permitted to create images owned by '{value[:64]}'.")
    if not Project.objects.filter(pk=value).exists():
        raise InvalidImage(f"Project {value[:64]} does not exist.")
    return value


def _apply_core(image: Image, ctx: RequestContext | None, attribute: str, value: Any) -> None:
    """Set one writable core attribute on ``image`` after checking the value."""
    if attribute == "name":
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise InvalidImage("name must be a string of at most 255 characters, or null.")
        image.name = value
    elif attribute == "visibility":
        visibility = _choice_value("visibility", value, Image.Visibility.values, nullable=False)
        if visibility == Image.Visibility.PUBLIC and ctx is not None and not ctx.is_admin:
            # Glance's publicize_image rule: a public image is in every project's default list, where a
            # member could squat on the names others look for. Community images are only found by asking.
            raise ImageForbidden(
                "Policy doesn't allow publicize_image to be performed: only admins make images public."
            )
        image.visibility = visibility
    elif attribute in ("min_disk", "min_ram"):
        setattr(image, attribute, _int_value(attribute, value))
    elif attribute == "protected":
        image.protected = _bool_value("protected", value)
    elif attribute == "tags":
        image.tags = _tags_value(value)
    elif attribute in ("disk_format", "container_format"):
        choices = DISK_FORMATS if attribute == "disk_format" else CONTAINER_FORMATS
        new = _choice_value(attribute, value, choices, nullable=True)
        if new != getattr(image, attribute) and image.status != Image.Status.QUEUED:
            raise ImageForbidden(f"Attribute {attribute} can be only replaced for a queued image.")
        setattr(image, attribute, new)
    elif attribute == "owner":
        if ctx is not None and not ctx.is_admin:
            raise ImageForbidden("Owner can't be updated by non admin.")
        image.owner_id = _owner_value(ctx, value)
    elif attribute == "os_hidden":
        if _bool_value("os_hidden", value):
            raise InvalidImage("Hidden images are not supported by this cloud.")
    else:  # pragma: no cover - callers only pass WRITABLE_ATTRIBUTES
        raise ImageForbidden(f"Attribute '{attribute}' is read-only.")


def _check_properties_count(properties: dict) -> None:
    if len(properties) > MAX_PROPERTIES:
        raise ImageTooLarge(f"An image may have at most {MAX_PROPERTIES} additional properties.")


# --- create, update, delete ----------------------------------------------------------------------------

_UNSET: Any = object()


def image_create(
    *,
    ctx: RequestContext | None,
    name: str | None = None,
    disk_format: str | None = None,
    container_format: str | None = None,
    visibility: str = Image.Visibility.SHARED,
    min_disk: int = 0,
    min_ram: int = 0,
    protected: bool = False,
    tags: Sequence[str] = (),
    properties: dict[str, str] | None = None,
    image_id: uuid.UUID | str | None = None,
    owner_id: str | None = _UNSET,
    os_hidden: bool = False,
) -> Image:
    """Register a new image in ``queued`` status, owned by the caller's project unless ``owner_id`` says.

    ``properties`` are the free-form string properties the API flattens into the image.
    """
    if ctx is not None and not ctx.can_write:
        raise ImageForbidden("Policy doesn't allow this operation to be performed: your role is read-only.")
    image = Image(status=Image.Status.QUEUED)
    if image_id is not None:
        try:
            image.id = image_id if isinstance(image_id, uuid.UUID) else uuid.UUID(str(image_id))
        except ValueError:
            raise InvalidImage(f"Invalid image id {str(image_id)[:64]!r}: expected a UUID.") from None
    values = {
        "name": name,
        "disk_format": disk_format,
        "container_format": container_format,
        "visibility": visibility,
        "min_disk": min_disk,
        "min_ram": min_ram,
        "protected": protected,
        "tags": list(tags),
        "os_hidden": os_hidden,
    }
    for attribute, value in values.items():
        _apply_core(image, ctx, attribute, value)
    if owner_id is _UNSET:
        image.owner_id = ctx.project.pk if ctx is not None else None
    else:
        image.owner_id = _owner_value(ctx, owner_id)
    clean_properties: dict[str, str] = {}
    for key, value in (properties or {}).items():
        _check_attribute_name(key)
        if key in CORE_ATTRIBUTES:
            raise InvalidImage(f"'{key}' is an image attribute, not a property.")
        clean_properties[key] = _property_value(key, value)
    _check_properties_count(clean_properties)
    image.properties = clean_properties

    try:
        with transaction.atomic():
            if image.owner_id is not None:
                _check_quota(project=image.owner, images=1)
            if Image.objects.filter(pk=image.id).exists():
                raise ImageConflict(f"An image with identifier {image.id} already exists.")
            image.save(force_insert=True)
    except IntegrityError:
        raise ImageConflict(f"An image with identifier {image.id} already exists.") from None
    log.info("Image %s created in project %s", image.id, image.owner_id)
    return image


def image_update(*, ctx: RequestContext | None, image: Image, changes: Sequence[ImageChange]) -> Image:
    """Apply JSON-patch ``changes`` to the image all together, or none of them."""
    with transaction.atomic():
        locked = _locked(image.pk)
        _check_can_modify(ctx, locked)
        properties = dict(locked.properties)
        for change in changes:
            if change.op not in ("add", "replace", "remove"):
                raise InvalidImage(f"Invalid operation: `{change.op}`.")
            _check_attribute_name(change.attribute)
            if change.attribute in WRITABLE_ATTRIBUTES:
                if change.op == "remove":
                    raise ImageForbidden(f"Property {change.attribute} may not be removed.")
                _apply_core(locked, ctx, change.attribute, change.value)
            elif change.op == "remove":
                if change.attribute not in properties:
                    raise ImageConflict(f"Property {change.attribute} does not exist.")
                del properties[change.attribute]
            else:
                if change.op == "replace" and change.attribute not in properties:
                    raise ImageConflict(f"Property {change.attribute} does not exist.")
                properties[change.attribute] = _property_value(change.attribute, change.value)
        _check_properties_count(properties)
        locked.properties = properties
        if changes:
            locked.save()
    return locked


def image_tag_add(*, ctx: RequestContext | None, image: Image, tag: str) -> Image:
    with transaction.atomic():
        locked = _locked(image.pk)
        _check_can_modify(ctx, locked)
        if tag not in locked.tags:
            locked.tags = _tags_value([*locked.tags, tag])
            locked.save(update_fields=["tags", "updated_at"])
    return locked


def image_tag_remove(*, ctx: RequestContext | None, image: Image, tag: str) -> Image:
    with transaction.atomic():
        locked = _locked(image.pk)
        _check_can_modify(ctx, locked)
        if tag not in locked.tags:
            raise ImageNotFound(f"Tag {tag[:255]} not found.")
        locked.tags = [t for t in locked.tags if t != tag]
        locked.save(update_fields=["tags", "updated_at"])
    return locked


def image_delete(*, ctx: RequestContext | None, image: Image) -> None:
    """Mark the image deleted and remove its file once that is committed.

    The row stays (status ``deleted``) so instances built from it keep their history and the id is never
    reused; every read hides it.
    """
    with transaction.atomic():
        locked = _locked(image.pk)
        _check_can_modify(ctx, locked)
        if locked.protected:
            raise ImageForbidden(f"Image {locked.id} is protected and cannot be deleted.")
        locked.status = Image.Status.DELETED
        locked.save(update_fields=["status", "updated_at"])
        path = image_file_path(locked)
        transaction.on_commit(lambda: _remove_quietly(path))
    log.info("Image %s deleted", locked.id)


def _check_quota(*, project: Project, images: int = 0, size: int = 0) -> None:
    """The owner's image quotas (``image_count_total``, ``image_size_total``); locks its row."""
    try:
        quotas.image_quota_check(project=project, images=images, size=size)
    except quotas.QuotaExceeded as exc:
        raise ImageQuotaExceeded(str(exc)) from None


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        log.exception("Could not remove image file %s", path)


# --- data ----------------------------------------------------------------------------------------------


@dataclass
class _Written:
    path: Path
    size: int
    md5: str
    sha256: str
    header: bytes


_HEADER_BYTES = 512
_QCOW2_MAGIC = b"QFI\xfb"


def image_upload(
    *,
    image: Image,
    stream: BinaryIO,
    ctx: RequestContext | None = None,
    expected_size: int | None = None,
) -> Image:
    """Store the image's data from ``stream`` (anything with ``read(n)``) and make the image active.

    Returns the updated image; ``image`` itself is refreshed too.

    Only a ``queued`` image takes data; while the data streams in the image is ``saving``, so a second
    upload at the same time gets :class:`ImageConflict`. On any failure the image goes back to ``queued``
    and nothing is left on disk.

    The data may not exceed ``MAX_IMAGE_SIZE``, the size announced, or what the owner project's
    ``image_size_total`` quota leaves: an announced size over a limit is refused before anything is read,
    and reading stops as soon as the data goes over one. The quota is checked again, under the project's
    lock, before the data becomes the image's, so uploads running side by side cannot share the room.
    """
    max_size = settings.CLOUD["MAX_IMAGE_SIZE"]
    if expected_size is not None and expected_size > max_size:
        raise ImageTooLarge(f"Image size {expected_size} exceeds the limit of {max_size} bytes.")
    with transaction.atomic():
        locked = _locked(image.pk)
        _check_can_modify(ctx, locked)
        if locked.status != Image.Status.QUEUED:
            raise ImageConflict(f"Image status must be queued to upload data, but it is {locked.status}.")
        if not locked.disk_format or not locked.container_format:
            raise InvalidImage("Properties disk_format, container_format must be set prior to saving data.")
        limit, refusal = _upload_limit(locked, expected_size)
        if expected_size is not None and expected_size > limit:
            raise refusal
        locked.status = Image.Status.SAVING
        locked.save(update_fields=["status", "updated_at"])

    written: _Written | None = None
    try:
        written = _write_stream(locked, stream, limit, refusal)
        if expected_size is not None and written.size != expected_size:
            raise InvalidImage(f"Received {written.size} bytes of image data but {expected_size} were announced.")
        virtual_size = _virtual_size(locked.disk_format, written)
        with transaction.atomic():
            if locked.owner_id is not None:
                _check_quota(project=locked.owner, size=written.size)
            current = Image.objects.select_for_update().filter(pk=locked.pk).first()
            if current is None or current.status != Image.Status.SAVING:
                raise ImageConflict(f"Image {locked.id} was deleted while its data was being uploaded.")
            final = image_file_path(current)
            os.replace(written.path, final)
            _fsync_dir(final.parent)
            current.size = written.size
            current.virtual_size = virtual_size
            current.checksum = written.md5
            current.os_hash_algo = HASH_ALGO
            current.os_hash_value = written.sha256
            current.status = Image.Status.ACTIVE
            current.save()
    except BaseException:
        if written is not None:
            written.path.unlink(missing_ok=True)
        Image.objects.filter(pk=locked.pk, status=Image.Status.SAVING).update(
            status=Image.Status.QUEUED, updated_at=timezone.now()
        )
        raise
    log.info("Image %s active: %d bytes, sha256 %s", current.id, current.size, current.os_hash_value)
    if image is not current:
        image.refresh_from_db()
    return current


def image_data_room(*, project: Project | None) -> tuple[int, ImageTooLarge]:
    """The most bytes of data one image of ``project`` may take now, and the refusal for more: the smaller of
    ``MAX_IMAGE_SIZE`` and what the project's ``image_size_total`` quota leaves (a read, without a lock)."""
    max_size = settings.CLOUD["MAX_IMAGE_SIZE"]
    room = quota_selectors.image_size_room(project) if project is not None else None
    if room is not None and room < max_size:
        message = f"Resource image_size_total is over limit: project {project.pk} may store {room} more bytes."
        return room, ImageQuotaExceeded(message)
    return max_size, ImageTooLarge(f"Image exceeds the limit of {max_size} bytes.")


def _upload_limit(image: Image, expected_size: int | None) -> tuple[int, ImageTooLarge]:
    """The most bytes an upload of ``image`` may carry, and the refusal for going over it."""
    limit, refusal = image_data_room(project=image.owner if image.owner_id is not None else None)
    if expected_size is not None and expected_size < limit:
        return expected_size, ImageTooLarge(f"More image data was sent than the {expected_size} bytes announced.")
    return limit, refusal


def _write_stream(image: Image, stream: BinaryIO, limit: int, refusal: ImageTooLarge) -> _Written:
    """Copy ``stream`` into a temporary file, reading never more than one byte past ``limit``; over it,
    ``refusal`` is raised and the file removed."""
    directory = image_dir()
    # Private images are private on disk too: the store is the API's alone (mkstemp makes the files 0600,
    # and the rename into place keeps that).
    directory.mkdir(parents=True, exist_ok=True, mode=IMAGE_DIR_MODE)
    directory.chmod(IMAGE_DIR_MODE)
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{image.id}.", suffix=".part")
    path = Path(name)
    md5 = hashlib.md5(usedforsecurity=False)
    sha256 = hashlib.sha256()
    size = 0
    header = b""
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                try:
                    chunk = stream.read(min(CHUNK_SIZE, limit + 1 - size))
                except OSError as exc:
                    raise InvalidImage(f"The image data could not be read from the request: {exc}") from None
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise refusal
                if len(header) < _HEADER_BYTES:
                    header += chunk[: _HEADER_BYTES - len(header)]
                md5.update(chunk)
                sha256.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise ImageTooLarge("There is no space left to store the image.") from None
                    raise
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _Written(path=path, size=size, md5=md5.hexdigest(), sha256=sha256.hexdigest(), header=header)


def _virtual_size(disk_format: str, written: _Written) -> int | None:
    """The guest-visible disk size, after checking that the data is what ``disk_format`` claims.

    A qcow2 file may name a backing file or an external data file that the hypervisor would open on the
    host; such images are refused, and so is qcow2 data declared as raw (which would be booted as qcow2
    by anything that probes formats).
    """
    is_qcow2 = written.header[:4] == _QCOW2_MAGIC
    if disk_format == "qcow2":
        if not is_qcow2 or len(written.header) < 72:
            raise InvalidImage("Image data is not in qcow2 format, but disk_format is qcow2.")
        version, backing_offset = struct.unpack(">IQ", written.header[4:16])
        virtual_size = struct.unpack(">Q", written.header[24:32])[0]
        if version not in (2, 3):
            raise InvalidImage(f"Unsupported qcow2 version {version}.")
        if backing_offset:
            raise InvalidImage("qcow2 images with a backing file are not allowed.")
        if version == 3:
            if len(written.header) < 80:
                raise InvalidImage("Truncated qcow2 header.")
            incompatible = struct.unpack(">Q", written.header[72:80])[0]
            if incompatible & 0b100:
                raise InvalidImage("qcow2 images with an external data file are not allowed.")
        return virtual_size
    if is_qcow2 and disk_format in ("raw", "iso"):
        raise InvalidImage(f"Image data is in qcow2 format, but disk_format is {disk_format}.")
    if disk_format in ("raw", "iso"):
        return written.size
    return None


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- signed downloads for compute hosts ----------------------------------------------------------------


def image_download_url(*, image: Image) -> str:
    """An absolute URL that serves the image's file to whoever holds it, for ``CLOUD['IMAGE_URL_TTL']`` s.

    The signature covers the image id and its SHA-256, so a URL stops working once the data changes.
    """
    if image.status != Image.Status.ACTIVE or not image.os_hash_value:
        raise ImageConflict(f"Image {image.id} has no data to download (status {image.status}).")
    token = signing.dumps({"id": str(image.id), "sha256": image.os_hash_value}, salt=_DOWNLOAD_SALT)
    query = urlencode({"sig": token})
    return f"{settings.CLOUD['PUBLIC_URL']}/internal/images/{image.id}/file?{query}"


def image_for_download(*, image_id: uuid.UUID | str, signature: str) -> Image:
    """The active image a signed URL grants, or :class:`DownloadDenied` / :class:`ImageNotFound`."""
    try:
        claims = signing.loads(signature, salt=_DOWNLOAD_SALT, max_age=settings.CLOUD["IMAGE_URL_TTL"])
    except signing.SignatureExpired:
        raise DownloadDenied("The download URL has expired.") from None
    except signing.BadSignature:
        raise DownloadDenied("The download URL's signature is not valid.") from None
    if not isinstance(claims, dict) or claims.get("id") != str(image_id):
        raise DownloadDenied("The download URL's signature is not valid for this image.")
    image = Image.objects.filter(pk=image_id).exclude(status=Image.Status.DELETED).first()
    if image is None:
        raise ImageNotFound(f"No image found with ID {image_id}")
    if image.status != Image.Status.ACTIVE or image.os_hash_value != claims.get("sha256"):
        raise DownloadDenied("The image data has changed since the download URL was issued.")
    return image


def image_build_spec(*, image: Image) -> dict:
    """What a compute host needs to fetch and verify the image: the fields of ``rpc.ImageSpec``."""
    return {
        "id": str(image.id),
        "url": image_download_url(image=image),
        "sha256": image.os_hash_value,
        "size": image.size,
        "disk_format": image.disk_format or "raw",
    }
