"""Throwaway slapd, sshd and memcached for the ldap, ssh and memcached checks,
and the listeners that misbehave for them: each server from the installed
binaries, in a directory of its own, on a free loopback port, never the
system's configuration. (Kept in one file so they can move as a whole.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.harness import PASSWORD, ServerProcess, port_open, wait_until
from tests.servers import free_port


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/install-test-deps.sh (Debian package {package})")
    return found


# -- listeners that misbehave -------------------------------------------------------------


@contextmanager
def answering_listener(reply: bytes) -> Iterator[int]:
    """A port that accepts, sends `reply` at once and closes: b"" is a server
    that closes at once, anything else garbage to the protocol under test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)  # accept() looks at `stop` between waits
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if reply:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


async def sockets_after_failing_runs(options: dict[str, Any], port: int, runs: int = 20) -> int:
    """Run a check `runs` times against a port where each run fails; the
    sockets it still holds then, before it is closed: a run, by any end,
    leaves none behind (a kept connection is counted too)."""
    from probed.model import Status
    from probed.runner import run_once
    from tests.conftest import check_from

    check = check_from(options)
    try:
        for _ in range(runs):
            result = await run_once(check)
            assert result.status is Status.FAIL, result.output
        return await sockets_left(port)
    finally:
        await check.close()


async def sockets_left(port: int, settle: float = 1.0) -> int:
    """sockets_to(port) once the ends of the runs have played out: a
    cancelled run aborts its transport in the next iteration of the loop,
    the socket closes in the one after, and a driver's own threads close
    theirs soon after. A socket still there after `settle` seconds stays."""
    for _ in range(3):
        await asyncio.sleep(0)
    deadline = asyncio.get_running_loop().time() + settle
    while (count := sockets_to(port)) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    return count


def sockets_to(port: int) -> int:
    """This process's TCP connections to a loopback port, in any state (from /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the directory's own descriptor, gone by now
            inodes.add(os.readlink(f"/proc/self/fd/{fd}"))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and f"socket:[{fields[9]}]" in inodes:
                    count += 1
    return count


# -- slapd --------------------------------------------------------------------------------

LDAP_BASE = "dc=example,dc=org"
LDAP_ADMIN = f"cn=admin,{LDAP_BASE}"
LDAP_USER = f"uid=probe,ou=people,{LDAP_BASE}"  # binds with PASSWORD
LDAP_PEOPLE = 3  # entries of objectClass inetOrgPerson under ou=people


class SlapdServer(ServerProcess):
    """slapd with a cn=config of its own (slapadd into a throwaway directory,
    never the system's), an mdb database for dc=example,dc=org with three
    people, plain LDAP on `port` (StartTLS offered) and LDAPS on `tls_port`."""

    def __init__(self, directory: Path, tls: tuple[Path, Path]) -> None:
        self.directory = directory
        self.port = free_port()
        self.tls_port = free_port()
        self.tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self._create()

    def _create(self) -> None:
        config, data = self.directory / "slapd.d", self.directory / "data"
        config.mkdir(parents=True)
        data.mkdir()
        cert, key = self.tls
        (self.directory / "config.ldif").write_text(
            f"""dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {self.directory}/slapd.pid
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {LDAP_BASE}
olcRootDN: {LDAP_ADMIN}
olcRootPW: {PASSWORD}
olcDbDirectory: {data}
olcDbMaxSize: 16777216
olcAccess: to attrs=userPassword by anonymous auth by * none
olcAccess: to * by * read
"""
        )
        people = "".join(
            f"""
dn: uid={uid},ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {PASSWORD}
"""
            for uid in ("probe", "alice", "bob")
        )
        (self.directory / "data.ldif").write_text(
            f"""dn: {LDAP_BASE}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{LDAP_BASE}
objectClass: organizationalUnit
ou: people
{people}"""
        )
        slapadd = _binary("slapadd", "slapd")
        for args in (["-n", "0", "-l", "config.ldif"], ["-n", "1", "-l", "data.ldif"]):
            subprocess.run(
                [slapadd, "-F", str(config), *args], cwd=self.directory, check=True, capture_output=True, timeout=60
            )

    def start(self) -> None:
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        self.process = subprocess.Popen(
            [_binary("slapd", "slapd"), "-F", str(self.directory / "slapd.d"), "-h", urls, "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port) and port_open(self.tls_port), f"slapd on port {self.port}")


# -- sshd ---------------------------------------------------------------------------------

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
            f"exec {_binary('sshd', 'openssh-server')} -D -e -f {d}/sshd_config"
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


# -- memcached ----------------------------------------------------------------------------


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
        args = [_binary("memcached", "memcached"), "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "16"]
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


__all__ = [
    "KEY_PASSPHRASE",
    "LDAP_ADMIN",
    "LDAP_BASE",
    "LDAP_PEOPLE",
    "LDAP_USER",
    "PASSWORD",
    "SSH_USER",
    "MemcachedServer",
    "SlapdServer",
    "SshdServer",
    "answering_listener",
    "sockets_after_failing_runs",
    "sockets_left",
    "sockets_to",
]
