"""The table of check types. A type's module is imported only when a check of
that type is configured, so heavy client libraries load only when used."""

from __future__ import annotations

import importlib

from probed.checks.base import AnyCheck, Check, CheckOptions

TYPES: dict[str, str] = {
    "disk": "probed.checks.disk:DiskCheck",
    "http": "probed.checks.http:HttpCheck",
    "postgres": "probed.checks.postgres:PostgresCheck",
    "redis": "probed.checks.redis:RedisCheck",
    "smtp": "probed.checks.smtp:SmtpCheck",
    "s3": "probed.checks.s3:S3Check",
}


def load_type(type_name: str) -> type[AnyCheck]:
    """The Check class for a `type:` name; KeyError when there is none."""
    module_name, _, class_name = TYPES[type_name].partition(":")
    cls: type[AnyCheck] = getattr(importlib.import_module(module_name), class_name)
    return cls


def create_check(name: str, options: CheckOptions) -> AnyCheck:
    return load_type(options.type)(name, options)


__all__ = ["TYPES", "Check", "CheckOptions", "create_check", "load_type"]
