"""dnsmasq on a free port, answering only the records a test gives it."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.net import free_port, wait_until
from tests.support.servers import ServerProcess, binary


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
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hosts.write_text(
            "".join(f"{address} {name}\n" for name, addresses in records.items() for address in addresses)
        )
        config = self.directory / "dnsmasq.conf"
        config.write_text("".join(f"{option}\n" for option in options))
        args = [
            binary("dnsmasq", "dnsmasq-base"),
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
