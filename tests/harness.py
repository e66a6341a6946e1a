"""Throwaway dependency servers for tests, started from the installed binaries
on free loopback ports, which tests may stop, restart and break at will.

Never the machine's shared services on the standard ports.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.servers import free_port

# A password with every character that breaks naive URL handling.
PASSWORD = "p@ss:w/rd%"
ENCODED_PASSWORD = "p%40ss%3Aw%2Frd%25"


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pause_process(pid: int) -> None:
    """SIGSTOP, and wait until the kernel has stopped every thread: kill()
    returns before a process running on another core has stopped, and a
    server may still answer one more request in between."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    wait_until(lambda: all(_task_state(task) == "T" for task in tasks.iterdir()), f"process {pid} to stop", seconds=10)


def _task_state(task: Path) -> str:
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # a thread that ended meanwhile
        return "T"


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- PostgreSQL ------------------------------------------------------------------


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package postgresql)")
    return found[-1]


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: run them as `postgres`."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)


class PostgresServer:
    """A PostgreSQL cluster of its own: `postgres` is trusted on loopback (for
    setup), every other role logs in with scram-sha-256."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()

    @classmethod
    def create(cls, base: Path) -> PostgresServer:
        base.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(base)
        data = base / "data"
        subprocess.run(
            _as_postgres(
                [
                    postgres_bin("initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
        hba = data / "pg_hba.conf"
        trusted = "host all postgres 127.0.0.1/32 trust\nhost replication postgres 127.0.0.1/32 trust\n"
        hba.write_text(trusted + hba.read_text())
        return cls(data)

    def copy(self, base: Path) -> PostgresServer:
        """A new cluster from this stopped one's files: faster than initdb."""
        base.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.data_dir, base / "data", symlinks=True)
        _give_to_postgres(base)
        return PostgresServer(base / "data")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.data_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=16MB "
            "-c max_connections=40 -c wal_level=replica -c max_wal_senders=4 -c hot_standby=on"
        )
        subprocess.run(
            _as_postgres(
                [
                    postgres_bin("pg_ctl"),
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
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([postgres_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]),
            check=False,
            capture_output=True,
        )

    def sql(self, statement: str, database: str = "postgres") -> str:
        done = subprocess.run(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
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
        _give_to_postgres(self.data_dir)
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")

    def replica(self, base: Path) -> PostgresServer:
        """A streaming replica of this running server, not yet started."""
        base.mkdir(parents=True, exist_ok=True)
        _give_to_postgres(base)
        data = base / "data"
        subprocess.run(
            _as_postgres(
                [
                    postgres_bin("pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(data),
                    "-R",
                    "-X",
                    "stream",
                    "--no-sync",
                    "--checkpoint=fast",
                ]
            ),
            check=True,
            capture_output=True,
        )
        return PostgresServer(data)


def temp_dir(prefix: str) -> Path:
    """A directory the postgres user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _give_to_postgres(path)
    return path


# -- Redis ------------------------------------------------------------------------


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
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/install-test-deps.sh (Debian package redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        port = ["--port", "0", "--tls-port", str(self.port)] if self.tls else ["--port", str(self.port)]
        args = [
            binary,
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


# -- SMTP (aiosmtpd) ------------------------------------------------------------------


class SmtpServer:
    """A real SMTP server (aiosmtpd) on a free port: plain, STARTTLS or implicit
    TLS, optionally requiring AUTH with one user."""

    def __init__(
        self,
        tls_context: object | None = None,
        implicit_tls: bool = False,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.port = free_port()  # aiosmtpd's Controller cannot bind port 0
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.user = user
        self.controller: object | None = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Sink
        from aiosmtpd.smtp import AuthResult, LoginPassword

        def authenticate(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and self.user is not None
                and (data.login.decode(), data.password.decode()) == self.user
            )
            return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

        kwargs: dict[str, Any] = {}
        if self.implicit_tls:
            kwargs["ssl_context"] = self.tls_context
        elif self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        if self.user is not None:
            kwargs |= {"authenticator": authenticate, "auth_require_tls": False}
        controller = Controller(Sink(), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs)
        controller.start()
        self.controller = controller

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()  # type: ignore[attr-defined]
            self.controller = None


# -- S3 (moto) ---------------------------------------------------------------------------


class S3Server:
    """moto's S3-compatible server on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: object | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        server.start()
        wait_until(lambda: port_open(self.port), "moto server")
        self.server = server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()  # type: ignore[attr-defined]
            self.server = None

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket=name)


# -- NATS (nats-server) -----------------------------------------------------------------


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
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server not found: run scripts/install-test-deps.sh (Debian package nats-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nats.conf"
        tls = f'tls {{ cert_file: "{self.tls[0]}", key_file: "{self.tls[1]}" }}' if self.tls else ""
        config.write_text(
            f'listen: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.directory / "js"}", max_memory_store: 64MB, max_file_store: 64MB }}\n'
            f"{self.auth}\n{tls}\n"
        )
        self.process = subprocess.Popen(
            [binary, "-c", str(config), "-l", str(self.directory / "nats.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"nats-server on port {self.port}")

    def url(self, credentials: str = "") -> str:
        scheme = "tls" if self.tls else "nats"
        return f"{scheme}://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"


# -- MQTT (mosquitto) ---------------------------------------------------------------------


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
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise RuntimeError("mosquitto not found: run scripts/install-test-deps.sh (Debian package mosquitto)")
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
            [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: port_open(self.port), f"mosquitto on port {self.port}")


# -- gRPC (a server with the standard health servicer) ------------------------------------------


class GrpcServer(ServerProcess):
    """tests/grpc_server.py in a process of its own, so tests can stop, start and pause it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = Path(__file__).parent.parent
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.grpc_server", str(self.port)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"gRPC server on port {self.port}")


# -- DNS (dnsmasq) and a TCP proxy a test can cut ----------------------------------


class DnsServer(ServerProcess):
    """dnsmasq on a free port of 127.0.0.1 (UDP and TCP), answering only what
    the test gives it: `records` (name -> addresses) in a hosts file and any
    other dnsmasq options (`mx-host=...`, `txt-record=...`, `srv-host=...`,
    `cname=...`, `server=/zone/...`) in a generated config file. No upstream,
    no /etc/hosts, never the system's service."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.hosts = directory / "hosts"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, records: dict[str, list[str]], options: list[str] | tuple[str, ...] = ()) -> None:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.path.exists(binary):
            raise RuntimeError("dnsmasq not found: run scripts/install-test-deps.sh (Debian package dnsmasq-base)")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text(
            "".join(f"{address} {name}\n" for name, addresses in records.items() for address in addresses)
        )
        config = self.directory / "dnsmasq.conf"
        config.write_text("".join(f"{option}\n" for option in options))
        args = [
            binary,
            "--keep-in-foreground",
            f"--conf-file={config}",
            f"--port={self.port}",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
            f"--addn-hosts={self.hosts}",
            f"--pid-file={self.directory / 'dnsmasq.pid'}",
            "--cache-size=0",
            # Authoritative for the records' domains: an unknown name there is NXDOMAIN.
            *sorted({f"--local=/{name.rsplit('.', 1)[-1]}/" for name in records}),
        ]
        if os.geteuid() == 0:
            args.append("--user=root")  # dnsmasq drops to `nobody`, who cannot read pytest's private tmp_path
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(self._answers, f"dnsmasq on port {self.port}")

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"dnsmasq exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            # A query for the root's SOA: any well-formed answer means dnsmasq is up.
            sock.sendto(
                b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x06\x00\x01", ("127.0.0.1", self.port)
            )
            try:
                return sock.recv(512)[:2] == b"\x12\x34"
            except OSError:
                return False


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port; cut() drops every connection
    and refuses new ones (a broken path from one replica), heal() restores it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def heal(self) -> None:
        self.start()


@contextlib.contextmanager
def silent_udp_port() -> Iterator[int]:
    """A UDP port that takes every datagram and never answers (a DNS server that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class RcodeServer:
    """A UDP DNS server of a few lines that answers every query with one
    rcode (SERVFAIL, REFUSED...), built with dnspython's message API."""

    def __init__(self, rcode: str) -> None:
        self.rcode = rcode
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RcodeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        import dns.message
        import dns.rcode

        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return  # closed
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(dns.rcode.from_text(self.rcode))
            self._sock.sendto(response.to_wire(), peer)


# -- MariaDB ----------------------------------------------------------------------------


def _mariadb_binary(name: str) -> str:
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if binary is None:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package mariadb-server)")
    return binary


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
                _mariadb_binary("mariadb-install-db"),
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
            _mariadb_binary("mariadbd"),
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


# -- RabbitMQ ------------------------------------------------------------------------------


def rabbitmq_sbin(name: str) -> str:
    """The broker's own scripts: /usr/sbin's wrappers switch to the `rabbitmq`
    user and its HOME (the machine's cookie); these run as us, in our HOME."""
    found = sorted(glob.glob(f"/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package rabbitmq-server)")
    return found[-1]


def rabbitmq_password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    import base64
    import hashlib

    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


class RabbitMqServer:
    """A RabbitMQ node of its own: node name probed-test-<random>@localhost, its
    own AMQP, distribution and epmd ports, data, logs, config and Erlang cookie
    under `base`, no plugins. Users, vhosts and queues come from a definitions
    file loaded at boot: user `probe` (PASSWORD) on vhost `app` with queue `work`."""

    def __init__(self, base: Path, tls: tuple[Path, Path] | None = None) -> None:
        self.base = base
        self.port = free_port()
        self.tls = tls  # (certificate, key): also serve amqps on self.tls_port
        self.tls_port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"probed-test-{os.urandom(4).hex()}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        base.mkdir(parents=True, exist_ok=True)
        self._write_config()

    def _write_config(self) -> None:
        import json

        definitions = {
            "users": [
                {"name": "probe", "password_hash": rabbitmq_password_hash(PASSWORD), "tags": ""},
                {"name": "stranger", "password_hash": rabbitmq_password_hash("stranger"), "tags": ""},
            ],
            "vhosts": [{"name": "/"}, {"name": "app"}, {"name": "other"}],
            "permissions": [
                {"user": "probe", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
                for vhost in ("/", "app")
            ],
            "queues": [
                {"name": "work", "vhost": "app", "durable": True, "auto_delete": False, "arguments": {}},
            ],
        }
        (self.base / "definitions.json").write_text(json.dumps(definitions))
        (self.base / "enabled_plugins").write_text("[].\n")
        config = (
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            f"load_definitions = {self.base / 'definitions.json'}\n"
            "log.console = false\n"
        )
        if self.tls:
            cert, key = self.tls
            config += (
                f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.certfile = {cert}\nssl_options.keyfile = {key}\nssl_options.cacertfile = {cert}\n"
                "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
            )
        (self.base / "rabbitmq.conf").write_text(config)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),  # its own .erlang.cookie, never the machine's
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),  # an epmd of its own, stopped with the node
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbitmq.pid"),
        }

    def start(self) -> None:
        self.process = subprocess.Popen(
            [rabbitmq_sbin("rabbitmq-server")],
            env=self.env(),
            cwd=self.base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # A cold Erlang VM on a busy machine can take a minute.
        wait_until(lambda: port_open(self.port), f"rabbitmq-server on port {self.port}", 180)
        if self.tls:
            wait_until(lambda: port_open(self.tls_port), f"rabbitmq-server TLS on port {self.tls_port}", 60)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # the script's trap stops the node cleanly
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
            self.process = None
        epmd = shutil.which("epmd") or "/usr/lib/erlang/bin/epmd"
        subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], check=False, capture_output=True)

    def _beam_pid(self) -> int:
        """The Erlang VM's pid (the node writes it to its pid file once it runs)."""
        return int((self.base / "rabbitmq.pid").read_text().split()[0])

    def pause(self) -> None:
        """SIGSTOP the node: the kernel still accepts connections, nothing answers."""
        pause_process(self._beam_pid())

    def resume(self) -> None:
        os.kill(self._beam_pid(), 18)

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            [rabbitmq_sbin("rabbitmqctl"), "-n", self.node, "-q", *args],
            env=self.env(),
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return done.stdout.strip()

    def url(self, user: str = "probe", password: str = ENCODED_PASSWORD, vhost: str = "app", tls: bool = False) -> str:
        if tls:
            return f"amqps://{user}:{password}@localhost:{self.tls_port}/{vhost}"
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/{vhost}"

    def connection_names(self) -> list[str]:
        """Client-named connections the broker has open (rabbitmqctl takes a few seconds)."""
        return [line for line in self.ctl("list_connections", "client_properties").splitlines() if "probed" in line]
