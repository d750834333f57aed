"""Fixtures of the servers API tests."""

import pytest

from portal.api import microversion
from tests.factories import FlavorFactory, ImageFactory

from .helpers import SERVER_MAX_VERSION


@pytest.fixture
def server_microversions(monkeypatch):
    """Lets a test speak every microversion the servers resource implements, whatever maximum the API
    currently advertises for all its resources together."""
    if microversion.MAX_VERSION < SERVER_MAX_VERSION:
        monkeypatch.setattr(microversion, "MAX_VERSION", microversion.APIVersion(SERVER_MAX_VERSION))


@pytest.fixture
def flavor(db):
    return FlavorFactory(flavorid="1", name="m1.tiny")


@pytest.fixture
def image(member):
    return ImageFactory(owner=member.project)
