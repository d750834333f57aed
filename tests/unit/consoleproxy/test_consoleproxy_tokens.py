import pytest

from consoleproxy.tokens import TokenError, is_well_formed_token, token_cookies, token_from_request

pytestmark = pytest.mark.unit

TOKEN = "Zq3-x_9kTokenValue0123456789abcdef"


@pytest.mark.parametrize(
    "path",
    [
        f"/?token={TOKEN}",
        f"/websockify?token={TOKEN}",
        f"/?a=1&token={TOKEN}&b=2",
        f"/?token={TOKEN}&token={TOKEN}",
    ],
)
def test_token_comes_from_the_query(path):
    assert token_from_request(path, []) == TOKEN


def test_token_falls_back_to_the_cookie():
    assert token_from_request("/", [f"sessionid=abc; token={TOKEN}; csrftoken=x"]) == TOKEN
    assert token_from_request("/websockify", [f'token="{TOKEN}"']) == TOKEN
    assert token_from_request("/", ["theme=dark", f"token={TOKEN}"]) == TOKEN


def test_query_token_wins_over_the_cookie():
    assert token_from_request(f"/?token={TOKEN}", ["token=other-token"]) == TOKEN


def test_cookie_parsing_survives_unrelated_malformed_cookies():
    assert token_cookies([f'bad"cookie; =nothing; noequals; token={TOKEN}']) == [TOKEN]
    assert token_cookies(["csrftoken=abc; xtoken=def"]) == []


@pytest.mark.parametrize(
    ("path", "cookies", "message"),
    [
        ("/", [], "no token"),
        ("/?tokens=abc", ["csrftoken=abc"], "no token"),
        ("/?token=", [], "empty token"),
        ("/?token=a&token=b", [], "more than one token"),
        ("/?token=../../admin", [], "malformed"),
        ("/?token=abc%2Fdef", [], "malformed"),
        ("/?token=a+b", [], "malformed"),
        ("/", ["token=a; token=b"], "more than one token in the cookie"),
        ("/", ["token=bad value!"], "malformed token in the cookie"),
        ("/?" + "&".join(f"p{i}=1" for i in range(100)), [], "too many"),
    ],
)
def test_unusable_tokens_are_refused_with_a_reason_that_does_not_quote_them(path, cookies, message):
    with pytest.raises(TokenError, match=message) as excinfo:
        token_from_request(path, cookies)
    for secret in ("../../admin", "abc/def", "bad value"):
        assert secret not in str(excinfo.value)


def test_well_formed_tokens_are_url_safe_and_bounded():
    assert is_well_formed_token(TOKEN)
    assert is_well_formed_token("a" * 255)
    assert not is_well_formed_token("a" * 256)
    assert not is_well_formed_token("")
    assert not is_well_formed_token("abc.def")
    assert not is_well_formed_token("abc\n")
