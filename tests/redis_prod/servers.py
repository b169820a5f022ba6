"""Real Debian `redis-server` and `redis-sentinel` processes on free loopback ports, each in a
temporary directory of its own, for the production-Redis tests and `make bench-redis`.

Every process started here is stopped (SIGTERM, then SIGKILL) by `stop()`; `RedisSet` stops
all of its processes and removes their directories.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

__all__ = ["Certificates", "RedisProcess", "RedisSet", "free_port", "make_certificates"]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class RedisProcess:
    """One redis-server or redis-sentinel, started from a config file in `directory`."""

    directory: Path
    port: int
    config: list[str]
    sentinel: bool = False
    proc: subprocess.Popen[bytes] | None = None
    tls: dict[str, Any] = field(default_factory=dict)  # client TLS options for `client()`
    password: str | None = None

    def start(self) -> RedisProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / ("sentinel.conf" if self.sentinel else "redis.conf")
        lines = [f"bind {HOST}", f"dir {self.directory}", f"logfile {self.directory}/log"]
        if not self.tls:
            lines.append(f"port {self.port}")
        conf.write_text("\n".join(lines + self.config) + "\n")
        binary = "redis-sentinel" if self.sentinel else "redis-server"
        self.proc = subprocess.Popen([binary, str(conf)], cwd=self.directory)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with contextlib.closing(self.client(timeout=0.5)) as c:
                    c.ping()
                return self
            except redis.AuthenticationError:
                return self  # answering, just not to the default user
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "log").read_text() if self.running_log else ""
                    raise RuntimeError(f"{binary} on {self.port} did not start: {log}") from None
                time.sleep(0.05)

    @property
    def running_log(self) -> bool:
        return (self.directory / "log").exists()

    def client(self, timeout: float = 5.0, **options: Any) -> redis.Redis:
        """A plain client of this process (as the default user, with its password)."""
        kwargs: dict[str, Any] = {"password": self.password, **self.tls, **options}
        return redis.Redis(
            HOST, self.port, socket_timeout=timeout, socket_connect_timeout=timeout, **kwargs
        )

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class RedisSet:
    """The processes of one test, under one temporary directory."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fgr", dir="/tmp")))
    processes: list[RedisProcess] = field(default_factory=list)

    def server(
        self,
        *config: str,
        name: str = "",
        password: str | None = None,
        appendfsync: str = "everysec",
        tls: Certificates | None = None,
    ) -> RedisProcess:
        port = free_port()
        lines = ["save ''", "appendonly yes", f"appendfsync {appendfsync}"]
        lines += ["repl-diskless-sync-delay 0"]
        if password:
            lines += [f"requirepass {password}", f"masterauth {password}"]
        tls_lines, client_tls = _tls(port, tls)
        lines += [*tls_lines, *config]  # config last: it overrides the above
        process = RedisProcess(self.root / (name or f"r{port}"), port, lines, tls=client_tls)
        process.password = password
        self.processes.append(process)
        return process.start()

    def sentinel(
        self,
        master: RedisProcess,
        service: str = "forge",
        password: str | None = None,
        tls: Certificates | None = None,
    ) -> RedisProcess:
        """A sentinel watching `master` alone (quorum 1), quick to call it down (1 s)."""
        port = free_port()
        tls_lines, client_tls = _tls(port, tls)
        lines = [
            *tls_lines,
            f"sentinel monitor {service} {HOST} {master.port} 1",
            f"sentinel down-after-milliseconds {service} 1000",
            f"sentinel failover-timeout {service} 10000",
        ]
        if password:
            lines.append(f"sentinel auth-pass {service} {password}")
        process = RedisProcess(self.root / f"s{port}", port, lines, sentinel=True, tls=client_tls)
        self.processes.append(process)
        return process.start()

    def close(self) -> None:
        for process in self.processes:
            process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _tls(port: int, tls: Certificates | None) -> tuple[list[str], dict[str, Any]]:
    """The config lines of a TLS-only process on `port` (replication over TLS too, client
    certificates optional), and the options of a client of it."""
    if tls is None:
        return [], {}
    lines = [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {tls.server_cert}",
        f"tls-key-file {tls.server_key}",
        f"tls-ca-cert-file {tls.ca}",
        "tls-auth-clients optional",
        "tls-replication yes",
    ]
    client = {"ssl": True, "ssl_ca_certs": str(tls.ca)}
    client |= {"ssl_certfile": str(tls.client_cert), "ssl_keyfile": str(tls.client_key)}
    return lines, client


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate signed by
    it, and an unrelated CA (generated with `cryptography`, valid for a day)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        extensions: list[tuple[x509.ExtensionType, bool]],
    ) -> x509.Certificate:
        issuer_name, issuer_key = issuer or (name(subject), key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    def write_cert(path: Path, cert: x509.Certificate) -> Path:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    directory.mkdir(parents=True, exist_ok=True)
    ca_exts: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        ),
    ]
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("Forge test CA", ca_key, None, ca_exts)
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = certificate("Some other CA", other_key, None, ca_exts)
    leaf = [(x509.BasicConstraints(ca=False, path_length=None), True)]
    server_key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
    )
    server = certificate("localhost", server_key, (ca.subject, ca_key), [*leaf, (san, False)])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = certificate("forge-client", client_key, (ca.subject, ca_key), leaf)
    write_key(directory / "server.key", server_key)
    write_key(directory / "client.key", client_key)
    return Certificates(
        ca=write_cert(directory / "ca.pem", ca),
        server_cert=write_cert(directory / "server.pem", server),
        server_key=directory / "server.key",
        client_cert=write_cert(directory / "client.pem", client),
        client_key=directory / "client.key",
        other_ca=write_cert(directory / "other-ca.pem", other),
    )
