"""The host's cache of base images: ``<state>/images/<image_id>``, each verified before first use.

A download streams into a temporary file in the cache directory, is checked against the size and the
SHA-256 the control plane sent, and only then is renamed into place, so a file under its final name is
always complete and verified. ``<image_id>.sha256`` records the digest it was verified against. A lock
file per image makes concurrent builds of the same image (threads or processes) download it once.

The signed download URL carries a credential in its query string: it never appears in a log line or an
error message, only its scheme, host and path do.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from compute_tasks import request_ids
from compute_tasks.private_files import FILE_MODE, open_private, private_dir
from compute_tasks.rpc import ImageSpec

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024

_IMAGE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")


class ImageError(Exception):
    """The image could not be made available on this host; the message says why.

    ``reschedulable`` is False when another host would fail the same way (the served file does not
    match its checksum, the request is malformed).
    """

    def __init__(self, message: str, *, reschedulable: bool = True) -> None:
        super().__init__(message)
        self.reschedulable = reschedulable


class ImageCache:
    def __init__(self, directory: Path, *, timeout: float, session: requests.Session | None = None) -> None:
        self.directory = Path(directory)
        self.timeout = timeout
        self._session = session or requests.Session()

    def path_for(self, image_id: str) -> Path:
        if not _IMAGE_ID_RE.match(image_id) or image_id.endswith((".sha256", ".lock", ".part")):
            raise ImageError(f"image id {image_id!r} is not usable as a file name", reschedulable=False)
        return self.directory / image_id

    def fetch(self, image: ImageSpec, on_progress: Callable[[int, int], None] | None = None) -> Path:
        """The path of the verified image, downloading it first if this host does not have it yet.

        ``on_progress(received, total)`` is called after each chunk of a download (bytes), and once with
        the whole size when the image was cached already."""
        path = self.path_for(image.id)
        if not _SHA256_RE.match(image.sha256 or ""):
            raise ImageError(f"image {image.id} has no valid sha256 checksum", reschedulable=False)
        if not isinstance(image.size, int) or image.size <= 0:
            raise ImageError(f"image {image.id} has no valid size ({image.size!r})", reschedulable=False)
        private_dir(self.directory)
        with self._lock(image.id):
            if self._is_cached(image, path):
                if on_progress is not None:
                    on_progress(image.size, image.size)
                return path
            self._remove_partial_downloads(image.id)
            self._download(image, path, on_progress)
        return path

    def usage(self) -> tuple[int, int]:
        """(verified images, bytes on disk of everything in the cache: images, markers, partial downloads)."""
        images = used = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0, 0
        names = {entry.name for entry in entries}
        for entry in entries:
            try:
                used += entry.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:
                continue  # removed while we looked
            if entry.name + ".sha256" in names:
                images += 1
        return images, used

    def _remove_partial_downloads(self, image_id: str) -> None:
        # Left by a worker killed while downloading: no one else downloads this image while we hold its
        # lock, so every part file of it is dead.
        for part in self.directory.glob(f".{image_id}.*.part"):
            log.info("removing the partial download %s left by an earlier worker", part.name)
            part.unlink(missing_ok=True)

    # --- helpers ---------------------------------------------------------------------------------------

    @contextmanager
    def _lock(self, image_id: str) -> Iterator[None]:
        # flock locks belong to the open file, so two threads of one worker exclude each other too.
        with open_private(self.directory / f".{image_id}.lock") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _marker(self, path: Path) -> Path:
        return path.with_name(path.name + ".sha256")

    def _is_cached(self, image: ImageSpec, path: Path) -> bool:
        try:
            size = path.stat().st_size
            verified_digest = self._marker(path).read_text().strip()
        except FileNotFoundError:
            return False
        if size == image.size and hmac.compare_digest(verified_digest, image.sha256.lower()):
            return True
        # Images are immutable, so this is a stale or damaged copy: fetch a fresh one and replace it only
        # once that one is verified.
        log.warning("cached image %s does not match the requested size or checksum; fetching it again", image.id)
        return False

    def _download(self, image: ImageSpec, path: Path, on_progress: Callable[[int, int], None] | None) -> None:
        where = _redacted(image.url)
        log.info("downloading image %s (%d bytes) from %s", image.id, image.size, where)
        fd, tmp_name = tempfile.mkstemp(dir=self.directory, prefix=f".{image.id}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            received = 0
            with os.fdopen(fd, "wb") as out:
                try:
                    with self._session.get(
                        image.url, stream=True, timeout=self.timeout, headers=request_ids.outgoing_headers()
                    ) as response:
                        status = response.status_code
                        if status != 200:
                            raise ImageError(
                                f"download of image {image.id} from {where} failed: HTTP {status}",
                                reschedulable=status >= 500,
                            )
                        for chunk in response.iter_content(CHUNK_SIZE):
                            received += len(chunk)
                            if received > image.size:
                                raise ImageError(
                                    f"image {image.id} from {where} is larger than its declared "
                                    f"{image.size} bytes; download abandoned",
                                    reschedulable=False,
                                )
                            digest.update(chunk)
                            out.write(chunk)
                            if on_progress is not None:
                                on_progress(received, image.size)
                except (requests.Timeout, requests.ConnectionError) as exc:
                    # A stall while reading the body arrives as a ConnectionError wrapping urllib3's
                    # ReadTimeoutError; anything else is the server being unreachable.
                    if not isinstance(exc, requests.Timeout) and not _is_read_timeout(exc):
                        raise ImageError(
                            f"download of image {image.id} from {where} failed: {type(exc).__name__}"
                        ) from None
                    raise ImageError(
                        f"download of image {image.id} from {where} timed out after {self.timeout:g}s"
                    ) from None
                except requests.RequestException as exc:
                    # The exception's text can contain the signed URL: only its type is reported.
                    raise ImageError(
                        f"download of image {image.id} from {where} failed: {type(exc).__name__}"
                    ) from None
                out.flush()
                os.fsync(out.fileno())
            if received != image.size:
                raise ImageError(
                    f"image {image.id} from {where} is {received} bytes, expected {image.size}; "
                    "the download was deleted"
                )
            actual = digest.hexdigest()
            if not hmac.compare_digest(actual, image.sha256.lower()):
                raise ImageError(
                    f"image {image.id} from {where} has sha256 {actual}, expected {image.sha256.lower()}; "
                    "the download was deleted",
                    reschedulable=False,
                )
            tmp.chmod(FILE_MODE)  # a private image stays private on the host
            os.replace(tmp, path)
            _write_atomically(self._marker(path), actual + "\n")
            _fsync_dir(self.directory)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("image %s verified and cached at %s", image.id, path)


def _is_read_timeout(exc: requests.RequestException) -> bool:
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, FILE_MODE)
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ImageUploader:
    """Sends a snapshot's file to the control plane through the signed upload URL it was given.

    The URL is the host's only credential for the upload; like download URLs it never appears in a log
    line or an error message. The file is sent with its length, in one streamed request.
    """

    def __init__(self, *, timeout: float, session: requests.Session | None = None) -> None:
        self.timeout = timeout
        self._session = session or requests.Session()

    def upload(self, path: Path, url: str) -> None:
        where = _redacted(url)
        size = path.stat().st_size
        log.info("uploading %s (%d bytes) to %s", path.name, size, where)
        try:
            with path.open("rb") as data:
                response = self._session.put(
                    url,
                    data=data,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(size),
                        **request_ids.outgoing_headers(),
                    },
                    timeout=self.timeout,
                )
        except requests.Timeout:
            raise ImageError(f"upload to {where} timed out after {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise ImageError(f"upload to {where} failed: {type(exc).__name__}") from None
        if response.status_code not in (200, 201, 204):
            detail = _error_message(response)
            raise ImageError(f"upload to {where} failed: HTTP {response.status_code}{detail}")


def _error_message(response: requests.Response) -> str:
    """The message of an error in the API's envelope, if the response carries one."""
    try:
        body = response.json()
        message = next(iter(body.values()))["message"]
    except (ValueError, TypeError, KeyError, StopIteration, AttributeError):
        return ""
    return f" ({str(message)[:200]})"
