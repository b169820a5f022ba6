"""The forms of `redis.url`, parsed without a server: what each reaches, and one line naming
what is wrong with a URL Forge cannot use (never its password)."""

from __future__ import annotations

import pytest

from forge.errors import ConfigError
from forge.redis_url import RedisTarget, parse_redis_url, url_passwords
from forge.settings import load_settings, secret_values


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6380/2", RedisTarget(scheme="redis", tls=False)),
        (
            "rediss://forge:p%40ss@h/0",
            RedisTarget(scheme="rediss", tls=True, username="forge", password="p@ss"),
        ),
        ("unix:///run/redis.sock?db=3", RedisTarget(scheme="unix", tls=False)),
        (
            "redis+sentinel://a:1,b,[::1]:3/mymaster/4",
            RedisTarget(
                scheme="redis+sentinel",
                tls=False,
                sentinels=(("a", 1), ("b", 26379), ("::1", 3)),
                service="mymaster",
                db=4,
            ),
        ),
        (
            "rediss+sentinel://u:pw@s1:5000/svc",
            RedisTarget(
                scheme="rediss+sentinel",
                tls=True,
                sentinels=(("s1", 5000),),
                service="svc",
                username="u",
                password="pw",
            ),
        ),
    ],
)
def test_a_url_says_what_it_reaches(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "not a URL"),
        ("http://u:Secret-Pw-1@h/0", "unsupported scheme http://"),
        ("redis://u:Secret-Pw-1@h:port/0", "not a valid URL"),
        ("redis:///0", "no host"),
        ("redis+sentinel://u:Secret-Pw-1@h1:1,h2:2", "no service name"),
        ("redis+sentinel://:Secret-Pw-1@/svc", "no sentinel address"),
        ("redis+sentinel://h:99999/svc", "the port must be 1 to 65535"),
        ("redis+sentinel://h:1/svc/db", "database 'db': expected a number"),
        ("redis+sentinel://h:1/svc?ssl=true", "takes no ?query"),
    ],
)
def test_a_bad_url_is_one_line_without_its_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"FORGE_HOME": "/nonexistent", "FORGE_REDIS_URL": url})

    text = str(raised.value)
    assert message in text
    assert "Secret-Pw-1" not in text
    assert "\n" not in text


def test_every_form_of_every_redis_password_is_a_known_secret() -> None:
    environ = {
        "FORGE_HOME": "/nonexistent",
        "FORGE_REDIS_URL": "redis+sentinel://forge:p%40ss-Secret@h1:1,h2:2/svc",
        "FORGE_REDIS_SENTINEL_PASSWORD": "Sentinel-Secret",
    }

    found = secret_values(load_settings(environ=environ), environ)

    assert {"p%40ss-Secret", "p@ss-Secret", "Sentinel-Secret"} <= set(found)
    assert url_passwords("redis://h/0") == []
    assert url_passwords("redis://user@h/0") == []
