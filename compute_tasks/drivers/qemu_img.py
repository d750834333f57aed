"""qemu-img as the compute host runs it, on images users uploaded and on volumes that need credentials.

Three rules, each closing a way from a user's bytes to the host:

- An image that names another file on the host is refused: QEMU would open a qcow2's backing file or
  external data file for the guest, so an uploaded image could show the guest any file of the host (the
  data file was Nova's CVE-2024-32498). The qcow2 header is read here first, because qemu-img itself
  opens a data file the header names; what ``qemu-img info`` reports is then checked as well.
- ``qemu-img info`` parses those bytes, so it runs under an address-space and a CPU-time limit (Nova's
  ``prlimit`` values): a crafted image costs the host at most that. The limits are set by the ``prlimit``
  program, not a ``preexec_fn``, because the worker runs tasks in threads and a ``preexec_fn`` may
  deadlock in a child forked from a threaded process.
- A secret (an iSCSI CHAP password) reaches qemu-img in a 0600 file named by ``--object secret``. Nothing
  secret is ever in its arguments: every user of the host can read them in /proc/<pid>/cmdline.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from compute_tasks.drivers.base import DriverError

INFO_ADDRESS_SPACE_BYTES = 1024**3
INFO_CPU_SECONDS = 30

QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_INCOMPATIBLE_DATA_FILE = 1 << 2
SECRET_ID = "sec0"  # noqa: S105 - the name of a QEMU object, not a secret


# What ``checked_cached_info`` remembers, by file identity; forgotten all at once when full.
MAX_CHECKED_IMAGES = 256
_checked_images: dict[tuple, dict[str, Any]] = {}


class UnsafeImage(DriverError):
    """The image would make QEMU open other files of the host; no host of this cloud uses it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reschedulable=False)


def qcow2_header_refusal(path: Path, *, backing_allowed: bool = False) -> str | None:
    """Why the qcow2 image at ``path`` must not be opened, judged from its header alone; None when it
    names no other file (or is no qcow2 at all)."""
    with open(path, "rb") as image:
        header = image.read(80)
    if header[:4] != QCOW2_MAGIC or len(header) < 16:
        return None
    (version,) = struct.unpack(">I", header[4:8])
    (backing_file_offset,) = struct.unpack(">Q", header[8:16])
    if backing_file_offset and not backing_allowed:
        return "has a backing file of its own"
    if version >= 3 and len(header) >= 80:
        (incompatible_features,) = struct.unpack(">Q", header[72:80])
        if incompatible_features & _QCOW2_INCOMPATIBLE_DATA_FILE:
            return "has an external data file"
    return None


def info_refusal(info: Mapping[str, Any], *, backing_allowed: bool = False) -> str | None:
    """Why an image that ``qemu-img info`` describes as ``info`` must not be used, or None."""
    if not backing_allowed and (info.get("backing-filename") or info.get("full-backing-filename")):
        return "has a backing file of its own"
    specific = (info.get("format-specific") or {}).get("data") or {}
    if specific.get("data-file") or "data-file-raw" in specific:
        return "has an external data file"
    return None


def qemu_options(options: Mapping[str, str]) -> str:
    """``key=value,...`` in QEMU's option syntax, where a ',' inside a value is written twice."""
    return ",".join(f"{key}={str(value).replace(',', ',,')}" for key, value in options.items())


class QemuImg:
    def __init__(self, binary: str = "qemu-img", *, timeout: float = 120.0, prlimit: str = "prlimit") -> None:
        self.binary = binary
        self.timeout = timeout
        self.prlimit = prlimit

    def checked_info(self, path: Path, fmt: str, what: str) -> dict[str, Any]:
        """``qemu-img info`` of a user's image in format ``fmt``, refused (``UnsafeImage``, naming ``what``)
        if it names any other file of the host."""
        reason = qcow2_header_refusal(path) or info_refusal(info := self.info(path, fmt))
        if reason:
            raise UnsafeImage(f"{what} {reason}")
        return info

    def checked_cached_info(self, path: Path, fmt: str, what: str) -> dict[str, Any]:
        """``checked_info`` of an image in the host's image cache, which does not change once it is there:
        remembered by the file's identity (device, inode, size, modification time), so that each image
        is inspected once rather than on every build (two processes started each time). A refusal is
        not remembered: the next use is checked again."""
        stat = path.stat()
        key = (str(path), fmt, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
        info = _checked_images.get(key)
        if info is None:
            info = self.checked_info(path, fmt, what)
            if len(_checked_images) >= MAX_CHECKED_IMAGES:
                _checked_images.clear()
            _checked_images[key] = info
        return info

    def checked_overlay_chain(self, overlay: Path, what: str, *, force_share: bool = False) -> None:
        """Refuse an instance's overlay whose chain is longer than overlay and base, or in which any image
        has an external data file. The host made the overlay's header; this is the check before its
        contents leave the host in a snapshot."""
        reason = qcow2_header_refusal(overlay, backing_allowed=True)
        chain = self.info(overlay, "qcow2", backing_chain=True, force_share=force_share)
        if reason is None and len(chain) > 2:
            reason = "has a backing chain longer than its base image"
        for position, info in enumerate(chain):
            reason = reason or info_refusal(info, backing_allowed=position == 0)
        if reason:
            raise UnsafeImage(f"{what} {reason}")

    def info(self, path: Path, fmt: str, *, backing_chain: bool = False, force_share: bool = False) -> Any:
        args = ["info", "-f", fmt, "--output=json"]
        if backing_chain:
            args.append("--backing-chain")
        if force_share:
            args.append("-U")  # a running QEMU holds the image's lock; info only reads
        output = self.run(*args, str(path), limited=True)
        try:
            return json.loads(output)
        except ValueError:
            raise DriverError(f"qemu-img info of {path} printed no JSON") from None

    def write_to_volume(
        self,
        source: Path,
        source_format: str,
        *,
        target_format: str,
        target_path: str | None = None,
        target_options: Mapping[str, str] | None = None,
        password: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Copy ``source`` onto an existing volume: a file at ``target_path``, or the network disk that QEMU
        block-driver ``target_options`` describe (with ``password`` given to QEMU as a secret object)."""
        args = ["convert", "-q", "-n", "-f", source_format]
        if target_path is not None:
            self.run(*args, "-O", target_format, str(source), target_path, timeout=timeout)
            return
        if not target_options:
            raise DriverError("no target to write the image to")
        target = {"driver": target_format, **{f"file.{key}": value for key, value in target_options.items()}}
        with self._secret(password) as secret_object:
            if secret_object is not None:
                args += ["--object", secret_object]
                target["file.password-secret"] = SECRET_ID
            self.run(*args, "--target-image-opts", str(source), qemu_options(target), timeout=timeout)

    def run(self, *args: str, timeout: float | None = None, limited: bool = False) -> str:
        timeout = timeout or self.timeout
        argv = [self.binary, *args]
        if limited:
            argv = [self.prlimit, f"--as={INFO_ADDRESS_SPACE_BYTES}", f"--cpu={INFO_CPU_SECONDS}", "--", *argv]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            raise DriverError(f"{exc.filename or argv[0]} is not installed on this host") from exc
        except subprocess.TimeoutExpired as exc:
            raise DriverError(f"qemu-img {args[0]} took longer than {timeout:.0f}s") from exc
        if done.returncode != 0:
            raise DriverError(f"qemu-img {args[0]} failed: {done.stderr.strip() or done.returncode}")
        return done.stdout

    @contextlib.contextmanager
    def _secret(self, value: str | None) -> Iterator[str | None]:
        """A ``--object secret`` argument for ``value``, read from a 0600 file that lives as long as the
        block; None when there is no secret."""
        if value is None:
            yield None
            return
        fd, name = tempfile.mkstemp(prefix="qemu-img-secret-")  # mkstemp makes it 0600
        try:
            with os.fdopen(fd, "w") as secret_file:
                secret_file.write(value)
            yield f"secret,id={SECRET_ID}," + qemu_options({"file": name, "format": "raw"})
        finally:
            Path(name).unlink(missing_ok=True)
