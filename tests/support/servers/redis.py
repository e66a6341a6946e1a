"""redis-server on a free port."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ServerProcess, binary


class RedisServer(ServerProcess):
    """redis-server on a free port, optionally with a password or as a replica."""

    def __init__(
        self,
        directory: Path,
        password: str | None = None,
        replica_of: int | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.password = password
        self.replica_of = replica_of
        self.tls = tls  # (certificate, key): serve TLS only, on self.port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        args = [
            binary("redis-server", "redis-server"),
            *port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        if self.tls:
            cert, key = self.tls
            args += [
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-ca-cert-file",
                str(cert),
                "--tls-auth-clients",
                "no",
            ]  # redis wants a CA file even when clients bring no certificate
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), f"redis-server on port {self.port}")

    def url(self, password: str | None = None, db: int = 0) -> str:
        auth = f":{password}@" if password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}"
