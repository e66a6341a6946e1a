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


async def sockets_left(port: int) -> int:
    """sockets_to(port) once the loop has run the callbacks a run's end
    scheduled: a cancelled run aborts its transport in the next iteration,
    and the socket closes in the one after."""
    for _ in range(3):
        await asyncio.sleep(0)
    return sockets_to(port)


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
    "LDAP_ADMIN",
    "LDAP_BASE",
    "LDAP_PEOPLE",
    "LDAP_USER",
    "PASSWORD",
    "MemcachedServer",
    "SlapdServer",
    "answering_listener",
    "sockets_left",
    "sockets_to",
]
