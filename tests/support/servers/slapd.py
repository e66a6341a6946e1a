"""slapd with a cn=config of its own, for the ldap check."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import PASSWORD, ServerProcess, binary

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
        slapadd = binary("slapadd", "slapd")
        for args in (["-n", "0", "-l", "config.ldif"], ["-n", "1", "-l", "data.ldif"]):
            subprocess.run(
                [slapadd, "-F", str(config), *args], cwd=self.directory, check=True, capture_output=True, timeout=60
            )

    def start(self) -> None:
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.tls_port}/"
        self.process = subprocess.Popen(
            [binary("slapd", "slapd"), "-F", str(self.directory / "slapd.d"), "-h", urls, "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port) and port_open(self.tls_port), f"slapd on port {self.port}")
