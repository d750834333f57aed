"""The test session's real Cinder (``scripts/local_cinder.py``), as pytest fixtures."""

from __future__ import annotations

import pytest

from scripts.local_cinder import CinderError, CinderService

__all__ = ["CinderError", "CinderService", "cinder", "cinder_settings"]


@pytest.fixture(scope="session")
def cinder(tmp_path_factory):
    """A real Cinder (noauth, NFS on a local directory) for the whole test session."""
    service = CinderService(tmp_path_factory.mktemp("cinder")).start()
    print(f"cinder started in {service.startup_seconds:.1f}s at {service.endpoint}")
    yield service
    service.stop()


@pytest.fixture
def cinder_settings(cinder, settings):
    """The cloud under test speaks to the session's Cinder with noauth."""
    settings.CINDER = {**settings.CINDER, "ENDPOINT": cinder.endpoint}
    return settings
