"""The shipped systemd units (deploy/systemd/) parse as systemd reads them, and restart what fails."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
UNITS = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
PROCESSES = {"api", "conductor", "beat", "consoleproxy", "compute@"}


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def test_every_process_has_a_unit():
    assert {path.stem.removeprefix("cloud-") for path in UNITS} == PROCESSES


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_a_failed_process_is_started_again_with_its_settings_from_a_file(path):
    service = read_unit(path)["Service"]
    assert service["Restart"] == "on-failure"
    assert float(service["RestartSec"]) > 0
    assert any(line.startswith("EnvironmentFile=/etc/cloud/") for line in path.read_text().splitlines())
    assert service["ExecStart"].startswith("/opt/cloud/.venv/bin/")
    assert "StartLimitBurst" in read_unit(path)["Unit"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path):
    """Installed as an operator would (the virtualenv here instead of /opt/cloud's), every line parses."""
    venv = ROOT / ".venv"
    for path in UNITS:
        text = path.read_text().replace("/opt/cloud/.venv", str(venv.resolve())).replace("/opt/cloud", str(ROOT))
        text = "\n".join(
            "EnvironmentFile=/dev/null" if line.startswith("EnvironmentFile=") else line for line in text.splitlines()
        )
        (tmp_path / path.name).write_text(text + "\n")
    # The unit Debian's libvirt-daemon-system ships, which the compute unit requires.
    (tmp_path / "libvirtd.service").write_text("[Unit]\nDescription=libvirt\n[Service]\nExecStart=/bin/true\n")
    instances = [name.replace("@.service", "@hv1.service") for name in (path.name for path in UNITS)]
    for name in instances:
        if "@hv1" in name:
            shutil.copy(tmp_path / name.replace("@hv1", "@"), tmp_path / name)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(f"./{name}" for name in instances)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
