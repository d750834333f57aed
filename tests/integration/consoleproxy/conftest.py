"""A real console proxy process, a stand-in consoleauth view and a real QEMU VNC server."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from consoleproxy_services import running_consoleauth, running_qemu, start_proxy


@pytest.fixture(scope="session")
def consoleauth():
    with running_consoleauth() as stub:
        yield stub


@pytest.fixture(scope="session")
def qemu_vnc(tmp_path_factory):
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.fail("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")
    with running_qemu(qemu, tmp_path_factory.mktemp("qemu") / "qemu.log") as vnc:
        yield vnc


@pytest.fixture(scope="session")
def proxy(tmp_path_factory, consoleauth):
    running = start_proxy(tmp_path_factory.mktemp("consoleproxy"), consoleauth)
    yield running
    running.stop()


@pytest.fixture
def novnc_dir() -> Path:
    path = Path(os.environ.get("NOVNC_DIR", "/usr/share/novnc"))
    if not (path / "vnc_lite.html").is_file():
        pytest.fail(f"noVNC is not installed in {path} (apt-get install novnc)")
    return path
