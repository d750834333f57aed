import pytest

from portal.api import microversion
from portal.api.errors import BadRequest, NotAcceptable

pytestmark = pytest.mark.unit


class Req:
    def __init__(self, **meta):
        self.META = meta


def test_no_header_means_the_minimum():
    assert microversion.from_request(Req()) == "2.1"


def test_preferred_header_wins_over_legacy():
    req = Req(HTTP_OPENSTACK_API_VERSION="compute 2.19", HTTP_X_OPENSTACK_NOVA_API_VERSION="2.3")
    assert microversion.from_request(req) == "2.19"


def test_preferred_header_for_another_service_is_ignored():
    req = Req(HTTP_OPENSTACK_API_VERSION="volume 3.50", HTTP_X_OPENSTACK_NOVA_API_VERSION="2.3")
    assert microversion.from_request(req) == "2.3"


def test_several_services_in_one_header():
    req = Req(HTTP_OPENSTACK_API_VERSION="volume 3.50, compute 2.26")
    assert microversion.from_request(req) == "2.26"


def test_latest_is_the_maximum():
    assert microversion.from_request(Req(HTTP_X_OPENSTACK_NOVA_API_VERSION="latest")) == microversion.MAX_VERSION


@pytest.mark.parametrize("text", ["2.0", "3.0", "2.999", "1.1"])
def test_out_of_range_is_406(text):
    with pytest.raises(NotAcceptable):
        microversion.from_request(Req(HTTP_OPENSTACK_API_VERSION=f"compute {text}"))


@pytest.mark.parametrize("text", ["2", "two.one", "2.1.1", "2.01x", "", " "])
def test_malformed_is_400(text):
    req = Req(HTTP_X_OPENSTACK_NOVA_API_VERSION=text)
    if not text.strip():
        assert microversion.from_request(req) == "2.1"  # an empty header is no header
        return
    with pytest.raises(BadRequest):
        microversion.from_request(req)


def test_versions_compare_numerically():
    assert microversion.APIVersion("2.10") > microversion.APIVersion("2.9")
    assert microversion.APIVersion("2.47") >= "2.47"
