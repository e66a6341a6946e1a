"""slapd, sshd and memcached for the cost-per-run rows of the ldap, ssh and memcached types, each its own process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.certificates import issue_certificate
from tests.support.servers import PASSWORD, temp_dir
from tests.support.servers.memcached import MemcachedServer
from tests.support.servers.slapd import LDAP_USER, SlapdServer
from tests.support.servers.sshd import SSH_USER, SshdServer


@contextmanager
def ldap_ssh_memcached_services() -> Iterator[dict[str, Any]]:
    """cost.py options for the ldap, ssh and memcached checks against servers of their own."""
    base = temp_dir("probed-bench-lsm-")
    certificate = issue_certificate(base, days=90)
    slapd = SlapdServer(base / "slapd", (certificate.cert_file, certificate.key_file))
    sshd = SshdServer(base / "sshd")
    memcached = MemcachedServer(base / "memcached")
    servers = (slapd, sshd, memcached)
    try:
        for server in servers:
            server.start()
        ldap = {"type": "ldap", "url": f"ldap://127.0.0.1:{slapd.port}", "username": LDAP_USER, "password": PASSWORD}
        ssh = {"type": "ssh", "host": "127.0.0.1", "port": sshd.port}
        login = {**ssh, "username": SSH_USER, "key_file": str(sshd.user_key), "host_key": sshd.host_key_line()}
        memcached_options = {"type": "memcached", "host": "127.0.0.1", "port": memcached.port}
        yield {
            "ldap (bind)": ldap,
            "ldap (bind, search)": {**ldap, "search_base": "ou=people,dc=example,dc=org"},
            "ssh (banner)": ssh,
            "ssh (key login)": login,
            "ssh (key login, command)": {**login, "command": "true"},
            "memcached (stats)": memcached_options,
            "memcached (stats, set/get/delete)": {**memcached_options, "write_test": True},
        }
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
