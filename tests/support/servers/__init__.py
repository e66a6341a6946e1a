"""Throwaway dependency servers, one module per server: each started from the
installed binary (or a Python library) on a free loopback port, in a directory
of its own, which tests may stop, restart, pause and break at will. Never the
machine's shared services on the standard ports, never the system's config.

What they share lives here: the password every server's test user logs in
with, the base class of a server that runs as one child process, where a
binary is, and a scratch directory the postgres user can reach.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.faults import pause_process

# A password with every character that breaks naive URL handling.
PASSWORD = "p@ss:w/rd%"
ENCODED_PASSWORD = "p%40ss%3Aw%2Frd%25"


class ServerProcess:
    """A throwaway server that runs as one child process: stop, pause, resume."""

    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.process is not None
        pause_process(self.process.pid)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


def binary(name: str, package: str) -> str:
    """Where an installed server binary is (on PATH or in /usr/sbin), or a
    RuntimeError naming the Debian package to install."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package {package})")
    return found


def give_to_postgres(path: Path) -> None:
    """Run as root, initdb and the server run as `postgres`: they must own their files."""
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)


def temp_dir(prefix: str) -> Path:
    """A directory the postgres user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    give_to_postgres(path)
    return path
