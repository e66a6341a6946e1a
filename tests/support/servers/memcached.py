"""memcached on a free port, optionally with logins or TLS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ServerProcess, binary


class MemcachedServer(ServerProcess):
    """memcached on a free port; `users` log in with the text protocol (-Y),
    `tls` a (certificate, key) pair serves TLS only (-Z)."""

    def __init__(self, directory: Path, users: dict[str, str] | None = None, tls: tuple[Path, Path] | None = None):
        self.directory = directory
        self.port = free_port()
        self.users = users or {}
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [binary("memcached", "memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
        if os.geteuid() == 0:
            args += ["-u", "root"]  # it refuses to run as root without being told
        if self.users:
            auth = self.directory / "auth"
            auth.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
            args += ["-Y", str(auth)]
        if self.tls:
            args += ["-Z", "-o", f"ssl_chain_cert={self.tls[0]},ssl_key={self.tls[1]}"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), f"memcached on port {self.port}")
