"""A mosquitto broker on a free port."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ServerProcess, binary


class MosquittoServer(ServerProcess):
    """A mosquitto broker with a generated config: `users` log in with their
    passwords (anonymous otherwise), `acl` lines restrict their topics."""

    def __init__(
        self,
        directory: Path,
        users: dict[str, str] | None = None,
        acl: str = "",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.users = users or {}
        self.acl = acl
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest none"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot read the test's files
        if self.users:
            passwords = self.directory / "passwd"
            passwords.touch()
            for user, password in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
            passwords.chmod(0o644)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.acl:
            acl = self.directory / "acl"
            acl.write_text(self.acl)
            acl.chmod(0o644)
            lines.append(f"acl_file {acl}")
        if self.tls:
            lines += [f"certfile {self.tls[0]}", f"keyfile {self.tls[1]}"]
        config = self.directory / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [binary("mosquitto", "mosquitto"), "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: port_open(self.port), f"mosquitto on port {self.port}")
