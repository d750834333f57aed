import pytest

from consoleproxy.config import ConfigError, ConsoleProxyConfig, parse_listen
from consoleproxy.origin import Origin

pytestmark = pytest.mark.unit

SECRET = "shared-secret-for-tests"


@pytest.fixture(autouse=True)
def novnc_dir(tmp_path, monkeypatch):
    monkeypatch.setattr("consoleproxy.config.DEFAULT_NOVNC_DIR", str(tmp_path))
    return tmp_path


def config_from(**environ):
    return ConsoleProxyConfig.from_env({"CONSOLEAUTH_SECRET": SECRET, **environ})


def test_defaults_work_on_one_machine(novnc_dir):
    config = config_from()
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 6080)
    assert config.consoleauth_url == "http://127.0.0.1:8000/internal/consoleauth/"
    assert config.consoleauth_secret == SECRET
    assert config.connect_timeout == 5.0
    assert config.consoleauth_timeout == 3.0
    assert config.novnc_dir == str(novnc_dir)
    assert config.allowed_origins.origins == {
        Origin("http", "127.0.0.1", 8000),
        Origin("http", "localhost", 8000),
        Origin("http", "127.0.0.1", 6080),
        Origin("http", "localhost", 6080),
    }
    assert not config.tls_enabled


def test_values_are_read_from_the_environment(tmp_path):
    cert = tmp_path / "proxy.pem"
    cert.write_text("not parsed here")
    config = config_from(
        CONSOLEPROXY_LISTEN="[::1]:7000",
        CONSOLEAUTH_URL="https://api.internal:8443/internal/consoleauth",
        CONSOLE_ALLOWED_ORIGINS="https://cloud.example.org",
        CONSOLEPROXY_CONNECT_TIMEOUT="1.5",
        CONSOLEAUTH_TIMEOUT="0.5",
        NOVNC_DIR=str(tmp_path),
        CONSOLEPROXY_CERT=str(cert),
    )
    assert (config.listen_host, config.listen_port) == ("::1", 7000)
    assert config.consoleauth_url == "https://api.internal:8443/internal/consoleauth/"
    assert config.allowed_origins.origins == {Origin("https", "cloud.example.org", 443)}
    assert (config.connect_timeout, config.consoleauth_timeout) == (1.5, 0.5)
    assert config.novnc_dir == str(tmp_path)
    assert config.tls_enabled and config.tls_cert == str(cert) and config.tls_key is None


def test_novnc_dir_defaults_to_debians_package(monkeypatch):
    monkeypatch.undo()
    try:
        config = config_from()
    except ConfigError as exc:
        assert "NOVNC_DIR: /usr/share/novnc is not a directory" in str(exc)
    else:
        assert config.novnc_dir == "/usr/share/novnc"


def test_the_secret_is_required_and_never_shown():
    with pytest.raises(ConfigError, match="CONSOLEAUTH_SECRET: required"):
        ConsoleProxyConfig.from_env({})
    assert SECRET not in repr(config_from())
    with pytest.raises(ConfigError) as excinfo:
        ConsoleProxyConfig.from_env({"CONSOLEAUTH_SECRET": "two words"})
    assert "two words" not in str(excinfo.value)


def test_every_bad_value_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        config_from(
            CONSOLEPROXY_LISTEN="6080",
            CONSOLEAUTH_URL="ftp://x/consoleauth/",
            CONSOLE_ALLOWED_ORIGINS="http://good.test,null",
            CONSOLEPROXY_CONNECT_TIMEOUT="soon",
            CONSOLEAUTH_TIMEOUT="-1",
            NOVNC_DIR=str(tmp_path / "missing"),
            CONSOLEPROXY_KEY=str(tmp_path / "missing.key"),
        )
    message = str(excinfo.value)
    for name in (
        "CONSOLEPROXY_LISTEN",
        "CONSOLEAUTH_URL",
        "CONSOLE_ALLOWED_ORIGINS",
        "CONSOLEPROXY_CONNECT_TIMEOUT",
        "CONSOLEAUTH_TIMEOUT",
        "NOVNC_DIR",
        "CONSOLEPROXY_KEY",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONSOLEAUTH_URL", "http://127.0.0.1:8000/consoleauth/?token="),
        ("CONSOLEAUTH_URL", "http://user:pw@127.0.0.1:8000/consoleauth/"),
        ("CONSOLE_ALLOWED_ORIGINS", "*"),
        ("CONSOLE_ALLOWED_ORIGINS", "http://127.0.0.1:8000/portal"),
        ("CONSOLEPROXY_CONNECT_TIMEOUT", "0"),
        ("CONSOLEPROXY_CONNECT_TIMEOUT", "nan"),
        ("CONSOLEAUTH_TIMEOUT", "1e9"),
        ("CONSOLEPROXY_LISTEN", "::1:6080"),
        ("CONSOLEPROXY_LISTEN", "127.0.0.1:0"),
    ],
)
def test_bad_values_fail_at_start_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        config_from(**{name: value})


def test_a_key_needs_a_certificate(tmp_path):
    key = tmp_path / "proxy.key"
    key.write_text("x")
    with pytest.raises(ConfigError, match="CONSOLEPROXY_KEY: set without CONSOLEPROXY_CERT"):
        config_from(CONSOLEPROXY_KEY=str(key))


def test_config_is_frozen():
    config = config_from()
    with pytest.raises(AttributeError):
        config.listen_port = 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:6080", ("0.0.0.0", 6080)),  # noqa: S104
        ("[::]:443", ("::", 443)),
        ("proxy.internal:1", ("proxy.internal", 1)),
    ],
)
def test_parse_listen(value, expected):
    assert parse_listen(value) == expected
