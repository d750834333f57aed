import logging
import sys

import pytest

from consoleproxy.redaction import REDACTED, RedactingFormatter, redact

pytestmark = pytest.mark.unit

TOKEN = "Zq3-x_9kTokenValue0123456789abcdef"


@pytest.mark.parametrize(
    "line",
    [
        f'127.0.0.1 - - [21/Nov/2026 06:51:08] "GET /?token={TOKEN} HTTP/1.1" 101 -',
        f"127.0.0.1: Path: '/?token={TOKEN}'",
        f'"GET /vnc_lite.html?path=%3Ftoken%3D{TOKEN} HTTP/1.1" 200 -',
        f'"GET /vnc_lite.html?path=%253Ftoken%253D{TOKEN} HTTP/1.1" 200 -',
        f'"GET /?TOKEN={TOKEN} HTTP/1.1"',
        f'"GET /?tok%65n={TOKEN} HTTP/1.1"',
        f'"GET /?a=1&token={TOKEN}#frag HTTP/1.1"',
        f"Cookie: sessionid=1; token={TOKEN}",
        f"Max retries exceeded with url: /internal/consoleauth/{TOKEN} (Caused by ...)",
        f"GET http://127.0.0.1:8000/internal/consoleauth/{TOKEN}?x=1",
        f"code 400, message Bad request syntax ('GET /?token={TOKEN}')",
    ],
)
def test_redact_removes_the_token_from_log_lines(line):
    redacted = redact(line)
    assert TOKEN not in redacted
    assert REDACTED in redacted


def test_redact_keeps_the_rest_of_the_line_readable():
    line = f'10.0.0.5 "GET /vnc_lite.html?path=%3Ftoken%3D{TOKEN}&autoconnect=1 HTTP/1.1" 200 -'
    expected = f'10.0.0.5 "GET /vnc_lite.html?path={REDACTED}&autoconnect={REDACTED} HTTP/1.1" 200 -'
    assert redact(line) == expected
    for harmless in (
        "refused console websocket: Origin http://evil.test is not in CONSOLE_ALLOWED_ORIGINS",
        "consoleauth view: http://127.0.0.1:8000/internal/consoleauth/ (the token is appended)",
        "console open: VNC 127.0.0.1:5901 of instance 6f1c9c1e-8a55-4f7e-9c59-2b1b1d0f3a11",
    ):
        assert redact(harmless) == harmless


def test_formatter_redacts_messages_arguments_and_tracebacks():
    formatter = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError(f"failed on /?token={TOKEN}")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "path %s", (f"/?token={TOKEN}",), exc_info)
    output = formatter.format(record)
    assert TOKEN not in output
    assert "RuntimeError" in output
