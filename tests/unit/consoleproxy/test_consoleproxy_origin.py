import pytest

from consoleproxy.origin import InvalidOrigin, Origin, OriginAllowlist, parse_origin

pytestmark = pytest.mark.unit

ALLOWLIST = OriginAllowlist.parse("http://127.0.0.1:8000, https://cloud.example.org, http://[::1]:6080")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://127.0.0.1:8000", Origin("http", "127.0.0.1", 8000)),
        ("http://example.org", Origin("http", "example.org", 80)),
        ("http://example.org:80", Origin("http", "example.org", 80)),
        ("https://example.org", Origin("https", "example.org", 443)),
        ("https://example.org:443/", Origin("https", "example.org", 443)),
        ("HTTPS://Cloud.EXAMPLE.org", Origin("https", "cloud.example.org", 443)),
        ("http://[::1]:6080", Origin("http", "::1", 6080)),
        ("http://[0:0:0:0:0:0:0:1]:6080", Origin("http", "::1", 6080)),
        ("  http://localhost:6080  ", Origin("http", "localhost", 6080)),
    ],
)
def test_parse_origin_normalises_scheme_host_and_default_port(value, expected):
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "NULL",
        "ws://example.org",
        "file:///etc/passwd",
        "http://",
        "http://example.org/console",
        "http://example.org?x=1",
        "http://example.org#top",
        "http://user:pw@example.org",
        "http://example.org:0",
        "http://example.org:65536",
        "http://example.org:",
        "http://example.org:port",
        "http://exa mple.org",
        "http://exämple.org",
        "http://[not-ipv6]:80",
        "example.org",
        "*",
    ],
)
def test_parse_origin_refuses_values_that_name_no_single_web_origin(value):
    with pytest.raises(InvalidOrigin):
        parse_origin(value)


def test_origin_str_omits_the_default_port_and_brackets_ipv6():
    assert str(Origin("https", "example.org", 443)) == "https://example.org"
    assert str(Origin("http", "example.org", 8080)) == "http://example.org:8080"
    assert str(Origin("http", "::1", 6080)) == "http://[::1]:6080"


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8000/",
        "HTTP://127.0.0.1:8000",
        "https://cloud.example.org",
        "https://cloud.example.org:443",
        "https://CLOUD.example.org/",
        "http://[::1]:6080",
    ],
)
def test_allowlist_accepts_equivalent_spellings_of_an_allowed_origin(origin):
    assert ALLOWLIST.allows(origin)
    assert ALLOWLIST.refusal_reason([origin]) is None


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8001",
        "https://127.0.0.1:8000",
        "http://127.0.0.1",
        "http://cloud.example.org",
        "https://cloud.example.org:8443",
        "https://cloud.example.org.evil.test",
        "https://evilcloud.example.org",
        "http://localhost:8000",
        "null",
    ],
)
def test_allowlist_refuses_any_other_origin(origin):
    assert not ALLOWLIST.allows(origin)
    assert ALLOWLIST.refusal_reason([origin]) is not None


def test_refusal_reason_says_why():
    assert ALLOWLIST.refusal_reason([]) is None  # not a browser: the token alone decides
    assert ALLOWLIST.refusal_reason(["http://127.0.0.1:8000"] * 2) == "more than one Origin header"
    assert "not in CONSOLE_ALLOWED_ORIGINS" in ALLOWLIST.refusal_reason(["http://evil.test"])
    assert "http://evil.test" in ALLOWLIST.refusal_reason(["http://evil.test"])
    assert '"null"' in ALLOWLIST.refusal_reason(["null"])


def test_refusal_reason_escapes_and_bounds_a_client_supplied_value():
    reason = ALLOWLIST.refusal_reason(["http://x\r\nInjected: " + "a" * 500])
    assert "\n" not in reason
    assert len(reason) < 250


def test_allowlist_parse_reports_the_bad_entry_and_refuses_wildcards_and_empty_lists():
    with pytest.raises(InvalidOrigin, match="http://ok.test/path"):
        OriginAllowlist.parse("http://good.test, http://ok.test/path")
    with pytest.raises(InvalidOrigin, match=r"\*"):
        OriginAllowlist.parse("*")
    with pytest.raises(InvalidOrigin, match="no origin"):
        OriginAllowlist.parse(" , ")
