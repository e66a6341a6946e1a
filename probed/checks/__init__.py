"""The table of check types.

A type's module is imported only when a check of that type is configured, and
its driver only when a check of that type is created to run, so reading and
validating options costs no client library. Third-party types join through the `probed.checks` entry
point group, in the same `module:Class` form as this table.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable

from probed.checks.base import AnyCheck, Check, CheckOptions
from probed.checks.errors import exception_text
from probed.secrets import redact, secret_values

TYPES: dict[str, str] = {
    "disk": "probed.checks.disk:DiskCheck",
    "file": "probed.checks.file:FileCheck",
    "http": "probed.checks.http:HttpCheck",
    "postgres": "probed.checks.postgres:PostgresCheck",
    "redis": "probed.checks.redis:RedisCheck",
    "smtp": "probed.checks.smtp:SmtpCheck",
    "s3": "probed.checks.s3:S3Check",
    "nats": "probed.checks.nats:NatsCheck",
    "mqtt": "probed.checks.mqtt:MqttCheck",
    "grpc": "probed.checks.grpc:GrpcCheck",
    "tcp": "probed.checks.tcp:TcpCheck",
    "tls": "probed.checks.tls:TlsCheck",
    "dns": "probed.checks.dns:DnsCheck",
    "command": "probed.checks.command:CommandCheck",
    "heartbeat": "probed.checks.heartbeat:HeartbeatCheck",
    "mysql": "probed.checks.mysql:MysqlCheck",
    "amqp": "probed.checks.amqp:AmqpCheck",
    "memcached": "probed.checks.memcached:MemcachedCheck",
    "ldap": "probed.checks.ldap:LdapCheck",
    "ssh": "probed.checks.ssh:SshCheck",
    "websocket": "probed.checks.websocket:WebsocketCheck",
    "udp": "probed.checks.udp:UdpCheck",
    "icmp": "probed.checks.icmp:IcmpCheck",
}

ENTRY_POINT_GROUP = "probed.checks"

# Standard modules a first run would load: asyncio and urllib3 encode host
# names with the idna codec, and asyncio looks names up in a thread pool.
_FIRST_USE = ("encodings.idna", "concurrent.futures.thread")


class TypeUnavailable(Exception):
    """A configured type cannot be used here: unknown, broken plugin, missing extra."""


@functools.cache
def plugin_types() -> dict[str, str]:
    """Types that installed packages add through the entry point group."""
    found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    return {entry.name: entry.value for entry in found if entry.name not in TYPES}


def known_types() -> list[str]:
    return [*TYPES, *sorted(plugin_types())]


def load_type(type_name: str, *, need_driver: bool = True) -> type[AnyCheck]:
    """The Check class for a `type:` name; TypeUnavailable says why there is
    none. need_driver=False: the options suffice (the JSON Schema)."""
    location = TYPES.get(type_name) or plugin_types().get(type_name)
    if location is None:
        raise TypeUnavailable(f"unknown check type {type_name!r} (one of: {', '.join(known_types())})")
    module_name, _, class_name = location.partition(":")
    try:
        cls: type[AnyCheck] = getattr(importlib.import_module(module_name), class_name)
    except Exception as exc:  # a plugin's own bug must read as a config problem, not a traceback
        raise TypeUnavailable(f"check type {type_name!r} ({location}) cannot be loaded: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, Check)):
        raise TypeUnavailable(f"check type {type_name!r} ({location}) is not a probed Check class")
    # One name per distribution: "grpc" and "grpc._utilities" are the same pip install.
    missing = list(dict.fromkeys(module.split(".")[0] for module in cls.requires if not installed(module)))
    if missing and need_driver:
        extra = f"pip install 'probed[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
        raise TypeUnavailable(f"check type {type_name!r} needs {', '.join(missing)}: {extra}")
    return cls


_FOUND: set[str] = set()  # drivers found once stay found: each search stats sys.path


def installed(module: str) -> bool:
    """Whether a driver can be imported, asked without importing it. Asked
    once per check while validating: 2,000 checks searched sys.path 2,000 times."""
    top = module.split(".")[0]
    if top in _FOUND:
        return True
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False
    if found:  # a missing one is asked again: it may be installed by the next reload
        _FOUND.add(top)
    return found


def import_drivers(type_names: Iterable[str]) -> None:
    """Import the types' modules and drivers now (a reload does it in a thread,
    before building its checks on the loop); a type that cannot be loaded is
    left to create_check, whose error the config's validation already gave,
    and so is a driver whose import raises (CheckNotMade names the check)."""
    for type_name in type_names:
        try:
            _load_with_drivers(type_name)
        except Exception:
            continue


def _load_with_drivers(type_name: str) -> type[AnyCheck]:
    """The type's class, its driver and what a first run would import, imported."""
    cls = load_type(type_name)
    for module in (*cls.requires, *_FIRST_USE):
        importlib.import_module(module)
    return cls


class CheckNotMade(Exception):
    """A valid check's type raised while the check was made; `problem` is one
    line naming the check, its secrets masked (the exception may quote a DSN)."""

    def __init__(self, name: str, options: CheckOptions, exc: Exception) -> None:
        self.problem = redact(f"checks.{name}: cannot be made: {exception_text(exc)}", secret_values(options))
        super().__init__(self.problem)


def create_check(name: str, options: CheckOptions) -> AnyCheck:
    """A check ready to run: its driver imported and the check prepared
    (SSL contexts, clients), here and not in its first run. An import or a
    context takes the event loop for tens to hundreds of ms, which must
    not count against this check's timeout or any other's.

    A check whose preparation fails (a key that does not match its
    certificate) is still made: each of its runs fails with that error,
    as the run that met it would have, and the other checks go on. One
    that cannot be made at all (its type's constructor or driver import
    raising: a bug, a broken install) raises CheckNotMade."""
    try:
        check = _load_with_drivers(options.type)(name, options)
    except Exception as exc:
        raise CheckNotMade(name, options, exc) from exc
    try:
        check.prepare()
    except Exception as exc:  # this check's failure, not probed's: a start or reload goes on
        check.unprepared = exc
    return check


__all__ = [
    "TYPES",
    "Check",
    "CheckNotMade",
    "CheckOptions",
    "TypeUnavailable",
    "create_check",
    "import_drivers",
    "installed",
    "known_types",
    "load_type",
]
