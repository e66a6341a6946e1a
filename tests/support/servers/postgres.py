"""A PostgreSQL cluster of its own (initdb, pg_ctl, a streaming replica)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.net import free_port
from tests.support.servers import ENCODED_PASSWORD, PASSWORD, give_to_postgres


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package postgresql)")
    return found[-1]


def _run_as_postgres(name: str, *args: str, check: bool = True) -> None:
    """Run a PostgreSQL program; initdb and the server refuse to run as root: as `postgres` then."""
    command = [postgres_bin(name), *args]
    as_postgres = ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command
    subprocess.run(as_postgres, check=check, capture_output=True)


def _data_dir(base: Path) -> Path:
    """Where a new cluster's files go: under `base`, which postgres owns."""
    base.mkdir(parents=True, exist_ok=True)
    give_to_postgres(base)
    return base / "data"


class PostgresServer:
    """A PostgreSQL cluster of its own: `postgres` is trusted on loopback (for
    setup), every other role logs in with scram-sha-256."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()

    @classmethod
    def create(cls, base: Path) -> PostgresServer:
        data = _data_dir(base)
        _run_as_postgres(
            "initdb",
            "-D",
            str(data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        )
        hba = data / "pg_hba.conf"
        trusted = "host all postgres 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n"
        hba.write_text(trusted + hba.read_text())
        return cls(data)

    def copy(self, base: Path) -> PostgresServer:
        """A new cluster from this stopped one's files: faster than initdb."""
        base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.data_dir, base / "data", symlinks=True)
        give_to_postgres(base)
        return PostgresServer(base / "data")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB "
            "-c max_connections=40 -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on"
        )
        _run_as_postgres(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "-l",
            str(self.data_dir / "server.log"),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        _run_as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)

    def _as_admin(self) -> list[str]:
        """How a client program logs in to set the server up: as `postgres`, trusted on loopback."""
        return ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                "psql",
                *self._as_admin(),
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                statement,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def add_app_role(self, user: str = "probe", password: str = PASSWORD, database: str = "app") -> None:
        escaped = password.replace("'", "''")
        self.sql(f"CREATE ROLE {user} LOGIN PASSWORD '{escaped}'")
        self.sql(f"CREATE DATABASE {database} OWNER {user}")

    def dsn(self, user: str = "probe", password: str = ENCODED_PASSWORD, database: str = "app") -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def enable_tls(self, cert_file: Path, key_file: Path) -> None:
        """Serve TLS from the next start on (the key must be the server's own, mode 0600)."""
        shutil.copy(cert_file, self.data_dir / "server.crt")
        shutil.copy(key_file, self.data_dir / "server.key")
        os.chmod(self.data_dir / "server.key", 0o600)
        give_to_postgres(self.data_dir)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

    def replica(self, base: Path) -> PostgresServer:
        """A streaming replica of this running server, not yet started."""
        data = _data_dir(base)
        _run_as_postgres(
            "pg_basebackup",
            *self._as_admin(),
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "--no-sync",
            "--checkpoint=fast",
        )
        return PostgresServer(data)
