"""A RabbitMQ node of its own: its own ports, epmd, cookie and data."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.faults import pause_process
from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ENCODED_PASSWORD, PASSWORD


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
