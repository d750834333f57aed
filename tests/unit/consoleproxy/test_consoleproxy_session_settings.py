"""The path form of the token, its redaction, and the console-session settings of the proxy."""

import pytest

from consoleproxy.config import ConfigError, ConsoleProxyConfig
from consoleproxy.redaction import redact
from consoleproxy.tokens import TokenError, token_from_request

pytestmark = pytest.mark.unit

TOKEN = "Zq3-x_9kTokenValue0123456789abcdef"


@pytest.fixture(autouse=True)
def novnc_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("consoleproxy.config.DEFAULT_NOVNC_DIR", str(tmp_path))


def config_from(**environ):
    return ConsoleProxyConfig.from_env({"CONSOLEAUTH_SECRET": "s3cret", **environ})


def test_the_token_may_be_the_last_segment_of_a_token_path():
    assert token_from_request(f"/token/{TOKEN}", []) == TOKEN
    # the query still wins, as it does over the cookie
    assert token_from_request(f"/token/other?token={TOKEN}", []) == TOKEN


@pytest.mark.parametrize(
    ("path", "message"),
    [("/token/", "empty token in the URL path"), ("/token/a/b", "malformed token in the URL path")],
)
def test_bad_path_tokens_are_refused(path, message):
    with pytest.raises(TokenError, match=message):
        token_from_request(path, [])


def test_path_tokens_are_redacted_from_log_lines():
    line = f"127.0.0.1: Path: '/token/{TOKEN}'"
    assert TOKEN not in redact(line)
    assert "/token/<redacted>" in redact(line)


def test_session_settings_have_defaults_nova_users_expect():
    config = config_from()
    assert config.session_check_interval == 5.0
    assert config.close_on_token_expiry is False
    assert config.max_sessions_per_token == 1


def test_session_settings_are_read_from_the_environment():
    config = config_from(
        CONSOLEPROXY_SESSION_CHECK_INTERVAL="0.5",
        CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY="yes",
        CONSOLEPROXY_MAX_SESSIONS_PER_TOKEN="3",
    )
    assert (config.session_check_interval, config.close_on_token_expiry, config.max_sessions_per_token) == (
        0.5,
        True,
        3,
    )


def test_bad_session_settings_are_reported_together():
    with pytest.raises(ConfigError) as excinfo:
        config_from(
            CONSOLEPROXY_SESSION_CHECK_INTERVAL="0",
            CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY="maybe",
            CONSOLEPROXY_MAX_SESSIONS_PER_TOKEN="0",
        )
    message = str(excinfo.value)
    assert "CONSOLEPROXY_SESSION_CHECK_INTERVAL" in message
    assert "CONSOLEPROXY_CLOSE_ON_TOKEN_EXPIRY: 'maybe' is not a yes/no value" in message
    assert "CONSOLEPROXY_MAX_SESSIONS_PER_TOKEN: '0': must be a whole number from 1 to 100" in message
