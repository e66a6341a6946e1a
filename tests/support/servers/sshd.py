"""OpenSSH's sshd with a config, host key and user of its own, for the ssh check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import PASSWORD, ServerProcess, binary

SSH_USER = "probe"  # logs in with PASSWORD or with the user key
KEY_PASSPHRASE = "key-passphrase-42"


class SshdServer(ServerProcess):
    """OpenSSH's sshd in the foreground (-D -e) with a config, a host key and
    user keys generated in a directory of its own, on a free port.

    The user `probe` (the current uid, so commands run as the test does) and
    its password exist only inside a mount namespace of sshd's own: a copy of
    /etc/passwd and /etc/shadow with that user is bind-mounted there, and a
    tmpfs on /run holds sshd's privilege separation directory. The machine's
    files are never changed. Needs root (unshare, mount)."""

    def __init__(self, directory: Path) -> None:
        import pytest

        if os.geteuid() != 0:
            pytest.skip("sshd with a password user of its own needs root (a mount namespace)")
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.host_key = self._keygen("host_ed25519")
        self.user_key = self._keygen("user_ed25519")
        self.encrypted_user_key = self._keygen("user_encrypted", passphrase=KEY_PASSPHRASE)
        self.other_key = self._keygen("other_ed25519")  # trusted nowhere: an unknown host key
        (directory / "authorized_keys").write_text(
            Path(f"{self.user_key}.pub").read_text() + Path(f"{self.encrypted_user_key}.pub").read_text()
        )
        self._accounts()
        (directory / "sshd_config").write_text(
            f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {directory}/sshd.pid
AuthorizedKeysFile {directory}/authorized_keys
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin yes
StrictModes no
UseDNS no
MaxStartups 100
LogLevel VERBOSE
"""
        )

    def _keygen(self, name: str, passphrase: str = "") -> Path:
        path = self.directory / name
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return path

    def _accounts(self) -> None:
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True, text=True, check=True
        ).stdout.strip()
        uid, gid = os.getuid(), os.getgid()
        (self.directory / "passwd").write_text(
            Path("/etc/passwd").read_text() + f"{SSH_USER}:x:{uid}:{gid}::{self.directory}:/bin/sh\n"
        )
        (self.directory / "shadow").write_text(Path("/etc/shadow").read_text() + f"{SSH_USER}:{hashed}:19000::::::\n")

    def host_key_line(self, key: Path | None = None) -> str:
        """The host key as a known_hosts line's key part: `ssh-ed25519 AAAA...`."""
        algorithm, blob, *_ = Path(f"{key or self.host_key}.pub").read_text().split()
        return f"{algorithm} {blob}"

    def fingerprint(self, key: Path | None = None) -> str:
        done = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key or self.host_key}.pub"],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.split()[1]

    def known_hosts(self, key: Path | None = None) -> Path:
        path = self.directory / f"known_hosts-{(key or self.host_key).name}"
        path.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line(key)}\n")
        return path

    def start(self) -> None:
        d = self.directory
        script = (
            f"mount --bind {d}/passwd /etc/passwd && mount --bind {d}/shadow /etc/shadow && "
            "mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 755 /run/sshd && "
            f"exec {binary('sshd', 'openssh-server')} -D -e -f {d}/sshd_config"
        )
        with open(d / "sshd.log", "ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(lambda: port_open(self.port), f"sshd on port {self.port}")

    def log(self) -> str:
        return (self.directory / "sshd.log").read_text(errors="replace")
