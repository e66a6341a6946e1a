"""A MariaDB server of its own on a free port and socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ENCODED_PASSWORD, PASSWORD, ServerProcess, binary


class MariaDbServer(ServerProcess):
    """A MariaDB server of its own on a free port and socket, with real grants:
    root logs in over the socket without a password (for setup), the user
    `probe` (PASSWORD) owns database `app`, `repl` may replicate."""

    def __init__(self, base: Path, server_id: int = 1) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.socket = base / "mysqld.sock"
        self.port = free_port()
        self.server_id = server_id
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def create(cls, base: Path) -> MariaDbServer:
        """A stopped server with the users and database the tests log in with."""
        base.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                binary("mariadb-install-db", "mariadb-server"),
                "--no-defaults",
                f"--datadir={base / 'data'}",
                *(["--user=root"] if os.geteuid() == 0 else []),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--innodb-log-file-size=4M",
            ],
            check=True,
            capture_output=True,
        )
        server = cls(base)
        server.start()
        escaped = PASSWORD.replace("'", "''")
        server.sql(
            f"CREATE USER probe@'%' IDENTIFIED BY '{escaped}'; CREATE DATABASE app;"
            "GRANT ALL ON app.* TO probe@'%'; GRANT SLAVE MONITOR, PROCESS ON *.* TO probe@'%';"
            f"CREATE USER repl@'%' IDENTIFIED BY '{escaped}'; GRANT REPLICATION SLAVE ON *.* TO repl@'%';"
            "CREATE USER plain@'%' IDENTIFIED BY 'plain'; RESET MASTER;"
        )
        server.stop()
        return server

    def copy(self, base: Path, server_id: int = 1) -> MariaDbServer:
        """A new server from this stopped one's files: faster than installing one."""
        base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.data_dir, base / "data", symlinks=True)
        (base / "data" / "auto.cnf").unlink(missing_ok=True)
        return MariaDbServer(base, server_id)

    def start(self, *extra: str) -> None:
        args = [
            binary("mariadbd", "mariadb-server"),
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.base / 'error.log'}",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=4M",
            "--max-connections=30",
            f"--server-id={self.server_id}",
            f"--log-bin={self.data_dir / 'binlog'}",
            "--skip-slave-start",
            *(["--user=root"] if os.geteuid() == 0 else []),
            *extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.socket.exists() and port_open(self.port), f"mariadbd on port {self.port}", 60)

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, 18)  # SIGCONT: a paused server cannot shut down
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:  # a clean shutdown is not what the tests are about
                self.process.kill()
                self.process.wait(10)
            self.process = None

    def sql(self, statements: str) -> str:
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B", "-e", statements],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def dsn(self, user: str = "probe", password: str = ENCODED_PASSWORD, database: str = "app") -> str:
        return f"mysql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def replicate_from(self, primary: MariaDbServer) -> None:
        """Make this running server a replica of `primary`, from its current binlog position."""
        log_file, position = primary.sql("SHOW MASTER STATUS").split()[:2]
        escaped = PASSWORD.replace("'", "''")
        self.sql(
            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={primary.port}, MASTER_USER='repl', "
            f"MASTER_PASSWORD='{escaped}', MASTER_LOG_FILE='{log_file}', MASTER_LOG_POS={position}, "
            "MASTER_CONNECT_RETRY=1; START SLAVE"
        )
        self.wait_replicating()

    def wait_replicating(self, within: float = 30.0) -> None:
        """START SLAVE returns before the IO thread has connected ("Connecting"): wait for both threads."""
        deadline = time.monotonic() + within
        while True:
            status = self.sql("SHOW STATUS LIKE 'Slave_running'")  # ON: connected, both threads running
            if status.split()[-1:] == ["ON"]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replica did not start replicating within {within:g}s:\n{status}")
            time.sleep(0.1)
