from datetime import UTC, datetime, timedelta

import pytest

from consoleproxy.token_plugin import ConsoleAuthRefusal, ConsoleAuthTokenPlugin, console_target_from_payload

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
INSTANCE_UUID = "6f1c9c1e-8a55-4f7e-9c59-2b1b1d0f3a11"


def payload(**changes):
    body = {
        "instance_uuid": INSTANCE_UUID,
        "host": "127.0.0.1",
        "port": 5901,
        "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
    }
    body.update(changes)
    return body


def test_a_valid_answer_names_the_vnc_server():
    target = console_target_from_payload(payload(), now=NOW)
    assert (target.instance_uuid, target.host, target.port) == (INSTANCE_UUID, "127.0.0.1", 5901)
    assert target.expires_at == NOW + timedelta(minutes=10)


def test_a_z_suffixed_expiry_is_understood():
    target = console_target_from_payload(payload(expires_at="2026-11-21T12:05:00Z"), now=NOW)
    assert target.expires_at == NOW + timedelta(minutes=5)


def test_an_expired_token_is_refused_even_when_the_view_answers_200():
    with pytest.raises(ConsoleAuthRefusal, match="expired") as excinfo:
        console_target_from_payload(payload(expires_at=NOW.isoformat()), now=NOW)
    assert not excinfo.value.unavailable


@pytest.mark.parametrize(
    "body",
    [
        [],
        "127.0.0.1:5900",
        payload(instance_uuid="not-a-uuid"),
        payload(instance_uuid=None),
        payload(host=""),
        payload(host="evil host"),
        payload(host=5900),
        payload(port="5900"),
        payload(port=True),
        payload(port=0),
        payload(port=70000),
        payload(expires_at=None),
        payload(expires_at="tomorrow"),
        payload(expires_at="2026-11-21T12:30:00"),
    ],
)
def test_malformed_answers_are_refused_as_a_control_plane_fault(body):
    with pytest.raises(ConsoleAuthRefusal, match="malformed") as excinfo:
        console_target_from_payload(body, now=NOW)
    assert excinfo.value.unavailable


def test_malformed_tokens_never_reach_the_network():
    plugin = ConsoleAuthTokenPlugin(url="http://192.0.2.1:9/consoleauth/", secret="s", timeout=0.1)
    with pytest.raises(ConsoleAuthRefusal, match="malformed token"):
        plugin.resolve("../admin")
    assert plugin.lookup("../admin") is None


def test_the_secret_is_not_in_the_plugin_repr():
    plugin = ConsoleAuthTokenPlugin(url="http://127.0.0.1:8000/c/", secret="very-secret", timeout=1)
    assert "very-secret" not in repr(plugin)
