"""nats-server with JetStream on a free port."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ServerProcess, binary


class NatsServer(ServerProcess):
    """A nats-server with JetStream in a directory of its own; `auth` is a
    config fragment (users, token, nkeys), `tls` a (certificate, key) pair."""

    def __init__(self, directory: Path, auth: str = "", tls: tuple[Path, Path] | None = None) -> None:
        self.directory = directory
        self.port = free_port()
        self.auth = auth
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nats.conf"
        tls = f'tls {{ cert_file: "{self.tls[0]}", key_file: "{self.tls[1]}" }}' if self.tls else ""
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.directory / "js"}", max_memory_store: 64MB, max_file_store: 64MB }}\n'
            f"{self.auth}\n{tls}\n"
        )
        self.process = subprocess.Popen(
            [binary("nats-server", "nats-server"), "-c", str(config), "-l", str(self.directory / "nats.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"nats-server on port {self.port}")

    def url(self, credentials: str = "") -> str:
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"
