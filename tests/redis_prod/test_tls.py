"""TLS against a real redis-server (Debian's, built with TLS): `rediss://` with a CA generated
here, host names checked by default, a client certificate when the server asks for one, and
one clear line when the CA is wrong or a file is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_prod.conftest import forge, forge_env, one_error_line
from tests.redis_prod.servers import Certificates, RedisProcess, RedisSet, make_certificates

PASSWORD = "tls-Canary-4b1e"


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[RedisProcess, Certificates]]:
    """One TLS-only server (no plain port) that requires a client certificate."""
    servers = RedisSet()
    try:
        certs = make_certificates(servers.root / "certs")
        config = ("tls-auth-clients yes", "bind 127.0.0.1 127.0.0.2")
        server = servers.server(*config, password=PASSWORD, tls=certs)
        yield server, certs
    finally:
        servers.close()


def _env(
    tmp_path: Path, server: RedisProcess, host: str = "localhost", **extra: str
) -> dict[str, str]:
    url = f"rediss://default:{PASSWORD}@{host}:{server.port}/0"
    return forge_env(tmp_path, url, **extra)


def test_forge_works_over_tls_with_its_ca_and_client_certificate(
    tls: tuple[RedisProcess, Certificates], tmp_path: Path
) -> None:
    server, certs = tls
    env = _env(
        tmp_path,
        server,
        tls_ca=str(certs.ca),
        tls_cert=str(certs.client_cert),
        tls_key=str(certs.client_key),
    )

    submitted = forge(env, "task", "submit", "--command", "true")
    verified = forge(env, "events", "verify")
    status = forge(env, "status")

    assert submitted.returncode == 0, submitted.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"rediss://default:***@localhost:{server.port}/0" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr


def test_a_server_signed_by_another_ca_is_refused(
    tls: tuple[RedisProcess, Certificates], tmp_path: Path
) -> None:
    server, certs = tls
    env = _env(
        tmp_path,
        server,
        tls_ca=str(certs.other_ca),
        tls_cert=str(certs.client_cert),
        tls_key=str(certs.client_key),
    )

    line = one_error_line(forge(env, "task", "submit", "--command", "true"))

    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert PASSWORD not in line


def test_a_host_name_the_certificate_does_not_name_is_refused(
    tls: tuple[RedisProcess, Certificates], tmp_path: Path
) -> None:
    server, certs = tls
    files = {"tls_cert": str(certs.client_cert), "tls_key": str(certs.client_key)}
    # the certificate names localhost and 127.0.0.1, not 127.0.0.2 (which is loopback too)
    wrong = _env(tmp_path, server, "127.0.0.2", tls_ca=str(certs.ca), **files)
    unchecked = _env(
        tmp_path, server, "127.0.0.2", tls_ca=str(certs.ca), tls_check_hostname="false", **files
    )

    line = one_error_line(forge(wrong, "status"))

    assert "127.0.0.2" in line
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert forge(unchecked, "task", "submit", "--command", "true").returncode == 0


def test_a_server_that_wants_a_client_certificate_says_so(
    tls: tuple[RedisProcess, Certificates], tmp_path: Path
) -> None:
    server, certs = tls

    line = one_error_line(forge(_env(tmp_path, server, tls_ca=str(certs.ca)), "status"))

    assert "cannot reach Redis" in line


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"tls_ca": "/nonexistent/ca.pem"}, "redis.tls_ca: cannot read /nonexistent/ca.pem"),
        ({"tls_ca": "/etc/hostname"}, "redis.tls_ca: /etc/hostname is not a PEM file"),
        ({"tls_cert": "/tmp/x.pem"}, "redis.tls_cert and redis.tls_key: set both or neither"),
    ],
)
def test_bad_tls_files_are_one_line(
    tmp_path: Path, settings: dict[str, str], expected: str
) -> None:
    env = forge_env(tmp_path, "rediss://localhost:1/0", **settings)

    assert expected in one_error_line(forge(env, "status"))


def test_tls_files_without_rediss_are_refused(tmp_path: Path) -> None:
    env = forge_env(tmp_path, "redis://localhost:1/0", tls_ca="/tmp/ca.pem")

    line = one_error_line(forge(env, "status"))

    assert "redis.tls_ca: set, but redis.url is not rediss:// (TLS)" in line
