"""YAML -> validated, immutable configuration; every problem reported with its place.

Loading goes in three steps, each collecting problems instead of stopping at
the first: parse the YAML into plain data while remembering the line of every
key (and rejecting duplicate keys, which plain loaders silently drop),
substitute `${VAR}` / `${VAR:-default}` from the environment, then validate the
sections and each check against its type's options model.

Whatever the document, loading ends in a Config or in ConfigError: size,
depth and value counts are bounded, YAML tags are refused without echoing
their value, and every problem is one line with the config's secret values
masked (tests/test_config_properties.py feeds it arbitrary documents).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, SecretStr, ValidationError, create_model, field_validator, model_validator

from probed.checks import TypeUnavailable, known_types, load_type
from probed.checks.base import CheckOptions, CommonOptions
from probed.fields import Delay, Duration, ProbedModel, read_secret_file
from probed.groups import with_defaults
from probed.secrets import SENSITIVE_NAME, redact, secret_forms, url_secrets

BUILTIN_SOURCE = "<built-in default>"
BUILTIN_CONFIG = """\
# probed's built-in default: watch the free space of the root filesystem.
checks:
  root-disk:
    type: disk
    path: /
"""

CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# Bounds on what a config file may be: it is written by hand, and anything
# past these is a mistake or an attack (a "billion laughs" of aliases).
MAX_CONFIG_BYTES = 1_000_000
MAX_VALUES = 100_000  # scalars, mappings and lists, counted after expanding aliases
MAX_DEPTH = 32

Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is invalid; `problems` has one line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# -- sections ---------------------------------------------------------------


class ServerOptions(ProbedModel):
    listen: str = Field("0.0.0.0:8080", description="host:port the HTTP server binds")
    details: Literal["public", "token"] = Field(
        "public",
        description="public: everyone sees outputs and observed values; "
        "token: only callers sending 'Authorization: Bearer <token>' do, others see statuses",
    )
    token: SecretStr | None = Field(None, description="bearer token that unlocks details")
    token_file: Path | None = Field(None, description="file holding the bearer token")
    heartbeat_token: SecretStr | None = Field(
        None, description="bearer token for POST /heartbeat/{name}, for heartbeat checks without a token of their own"
    )
    heartbeat_token_file: Path | None = Field(None, description="file holding the heartbeat token")
    idle_timeout: Duration = Field(
        15.0,
        description="a client connection without a complete request for this long is closed "
        "(a half-sent request, or kept alive between requests)",
    )
    shutdown_delay: Delay = Field(
        0.0,
        description="on SIGTERM, answer 503 on /health/ready, /health/startup, /health and every configured group "
        "(not /health/live) for this long before stopping, so that load balancers stop sending requests first; "
        "0: stop at once",
    )
    watch_files: bool = Field(
        True,
        description="reload when the config file or a file it names changes, as on SIGHUP (a stat every second)",
    )

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _token_when_needed(self) -> ServerOptions:
        if self.details == "token" and self.token is None:
            raise ValueError("details: token needs token or token_file")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(value: str) -> tuple[str, int]:
    """'0.0.0.0:8080', '[::]:8080', ':8080' -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"listen must be host:port with a port from 1 to 65535, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port_text)


class SchedulerOptions(ProbedModel):
    max_concurrency: int = Field(64, ge=1, description="checks that may run at the same time")


class PeersOptions(ProbedModel):
    """The other replicas of this application, asked when a shared check fails."""

    dns: str | None = Field(
        None, description="a name whose A and AAAA records are the replicas (a Kubernetes headless Service)"
    )
    port: int | None = Field(None, ge=1, le=65535, description="the peers' port (default: this server's port)")
    static: tuple[str, ...] = Field((), description="host:port of each replica, instead of dns")
    resolver: str | None = Field(
        None, description="host:port of the DNS server that resolves dns (default: the system resolver)"
    )
    timeout: Duration = Field(1.0, description="a peer that has not answered in this time is unreachable")
    quorum: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the answering replicas (itself included) that must see a shared "
        "check failing for a shared outage",
    )
    alone: Literal["fail", "pass"] = Field(
        "fail", description="when no peer answers: fail gates readiness (this replica is the one cut off), pass not"
    )

    @field_validator("resolver")
    @classmethod
    def _valid_resolver(cls, value: str | None) -> str | None:
        if value is not None:
            _host_port(value, "resolver")
        return value

    @field_validator("static")
    @classmethod
    def _valid_static(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            _host_port(address, "static")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> PeersOptions:
        if (self.dns is None) == (not self.static):
            raise ValueError("give dns (with port) or static, exactly one of them")
        return self


def _host_port(value: str, key: str) -> tuple[str, int]:
    try:
        return parse_listen(value)
    except ValueError:
        raise ValueError(f"{key} takes host:port with a port from 1 to 65535, got {value!r}") from None


# /health/{name} serves groups; these paths under /health mean something else.
RESERVED_GROUPS = frozenset({"checks", "history"})


class _Sections(ProbedModel):
    server: ServerOptions = Field(default_factory=ServerOptions)
    scheduler: SchedulerOptions = Field(default_factory=SchedulerOptions)
    defaults: CommonOptions = Field(default_factory=CommonOptions)
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="check names by group, each answered at /health/{group}; defaults: ready = the critical "
        "checks, startup = the ready checks, live = none",
    )
    peers: PeersOptions | None = Field(None, description="the other replicas, for checks with scope: shared")
    checks: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    server: ServerOptions
    scheduler: SchedulerOptions
    checks: Mapping[str, CheckOptions]
    source: str = BUILTIN_SOURCE
    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # every group, defaults filled
    peers: PeersOptions | None = None


# -- loading ------------------------------------------------------------------


def config_path(cli_value: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """--config, then PROBED_CONFIG, then None for the built-in default."""
    return cli_value or environ.get("PROBED_CONFIG") or None


def load_config(path: str | None, environ: Mapping[str, str] = os.environ) -> Config:
    if path is None:
        return parse_config(BUILTIN_CONFIG, BUILTIN_SOURCE, environ)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)  # bounded: --config /dev/zero must end too
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config file: {exc.strerror or exc}"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: config file is larger than {MAX_CONFIG_BYTES:,} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: config file is not UTF-8 text"]) from None
    return parse_config(text, path, environ)


def parse_config(text: str, source: str, environ: Mapping[str, str] = os.environ) -> Config:
    reader = _Reader(source, environ)
    data = reader.read(text)
    config = reader.validate(data)
    if reader.problems:
        raise ConfigError(reader.sorted_problems())
    assert config is not None
    return config


class _Unreadable(Exception):
    """The document cannot be turned into data at all (too big, too deep, cyclic)."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Reader:
    """Collects problems with their lines while turning YAML into a Config."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.lines: dict[Path_, int] = {}
        self.problems: list[tuple[int, str]] = []
        self.reported: set[Path_] = set()  # places whose value is unusable and already has a problem
        self.secrets: set[str] = set()  # the config's secret values, masked in every problem
        self._values = 0
        self._open: set[int] = set()  # nodes being read: an alias back to one is a cycle

    def problem(self, path: Path_, message: str, line: int | None = None) -> None:
        line = line or self._line_of(path)
        where = f"{self.source}:{line}" if line else self.source
        place = f"{_dotted(path)}: " if path else ""
        self.problems.append((line or 0, _one_line(f"{where}: {place}{message}")))

    def sorted_problems(self) -> list[str]:
        # Masked last, once every secret of the file is known: a secret pasted
        # into the wrong field is echoed by that field's error otherwise.
        return [redact(text, self.secrets) for _, text in sorted(self.problems, key=lambda p: p[0])]

    def _line_of(self, path: Path_) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    # YAML -> data, with lines, duplicate keys and ${VAR} substitution.

    def read(self, text: str) -> Any:
        try:
            _check_depth(text)
            root = yaml.compose(text, Loader=_LOADER)
            data = None if root is None else self._node(root, ())
            return {} if data is None else data  # an empty document, or one that is only `---`
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark else None
            detail = getattr(exc, "problem", None) or "cannot parse"
            self.problem((), f"invalid YAML: {detail}", line)
        except _Unreadable as exc:
            self.problem((), exc.message, exc.line)
        return None

    def _node(self, node: yaml.Node, path: Path_) -> Any:
        line = node.start_mark.line + 1
        self._values += 1
        if self._values > MAX_VALUES:
            raise _Unreadable(f"the document has over {MAX_VALUES:,} values (after expanding aliases)", line)
        if len(path) > MAX_DEPTH:
            raise _Unreadable(f"the document is nested too deeply (at most {MAX_DEPTH} levels)", line)
        if id(node) in self._open:
            raise _Unreadable("an alias refers to a value that contains it", line)
        if not node.tag.startswith(_STANDARD_TAG):
            self.reported.add(path)
            hint = "write plain values; secrets come from ${VAR} or *_file"
            self.problem(path, f"unsupported YAML tag {_shown(node.tag)} ({hint})", line)
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node, path)
        finally:
            self._open.discard(id(node))

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.lines[path + (index,)] = item.start_mark.line + 1
            items.append(self._node(item, path + (index,)))
        return items

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        try:
            value = yaml.constructor.SafeConstructor().construct_object(node)
        except Exception:  # !!int abc, !!binary with bad base64, ...: not a value; never echo it
            self.reported.add(path)
            self.problem(path, f"not a valid {node.tag.removeprefix(_STANDARD_TAG)} value")
            return None
        return self._substitute(value, path) if isinstance(value, str) else value

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self.problem(path, "YAML merge keys (<<) are not supported: write the keys out, or use defaults", line)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(path, "keys must be plain names", line)
                continue
            key = str(key_node.value)
            if key in result:
                first = self.lines[path + (key,)]
                self.problem(path + (key,), f"duplicate key (first defined at line {first})", line)
                continue
            self.lines[path + (key,)] = line
            result[key] = self._node(value_node, path + (key,))
        return result

    def _substitute(self, text: str, path: Path_) -> str | None:
        missing: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match[0] == "$$":
                return "$"
            name, default = match["name"], match["default"]
            if name in self.environ:
                return self.environ[name]
            if default is not None:
                return default
            missing.append(name)
            return ""

        result = _VARIABLE.sub(replace, text)
        if missing:
            self.reported.add(path)  # the value is unusable; say why once
        for name in missing:
            self.problem(path, f"environment variable {name} is not set (write ${{{name}:-default}} for a default)")
        if "${" in _VARIABLE.sub("", text):
            self.problem(path, "malformed ${...}: write ${NAME} or ${NAME:-default}")
        # A value that was only variables and came out empty means "not set".
        if result == "" and _VARIABLE.fullmatch(text):
            return None
        return result

    # data -> Config

    def validate(self, data: Any) -> Config | None:
        if data is None:
            return None
        if not isinstance(data, dict):
            self.problem((), "the config must be a mapping with server, defaults and checks")
            return None
        self.secrets |= config_secrets(data)
        for key in data.keys() - _Sections.model_fields.keys():
            self.problem((key,), "unknown key (expected server, scheduler, defaults, groups, peers, checks)")
        # Each section on its own, so a mistake in one hides none in another.
        server = self._section(ServerOptions, data, "server")
        scheduler = self._section(SchedulerOptions, data, "scheduler")
        defaults = self._section(CommonOptions, data, "defaults") or CommonOptions()
        raw_checks = data.get("checks")
        if raw_checks is None:
            raw_checks = {}
        if not isinstance(raw_checks, dict):
            self.problem(("checks",), "checks must be a mapping of names to checks")
            raw_checks = {}
        checks = self._validate_checks(raw_checks, defaults)
        if not raw_checks:
            self.problem(("checks",), "no checks configured: add at least one")
        self._check_dependencies(checks, raw_checks)
        groups = self._groups(data.get("groups"), checks, raw_checks)
        peers = self._section(PeersOptions, data, "peers") if data.get("peers") is not None else None
        if server is not None and server.heartbeat_token is not None:
            checks = _with_server_heartbeat_token(checks, server.heartbeat_token)
        if server is None or scheduler is None or self.problems:
            return None
        return Config(server, scheduler, checks, self.source, groups, peers)

    def _groups(self, raw: Any, checks: dict[str, CheckOptions], known: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """Every group with its members: the configured ones, the kinds' defaults for the rest."""
        configured: dict[str, tuple[str, ...]] = {}
        if raw is not None and not isinstance(raw, dict):
            self.problem(("groups",), "groups must map group names to lists of check names")
        for name, members in (raw if isinstance(raw, dict) else {}).items():
            path: Path_ = ("groups", name)
            if not CHECK_NAME.match(name):
                self.problem(path, "group names use letters, digits, '_', '.', '-' (at most 63)")
            elif name in RESERVED_GROUPS:
                self.problem(path, f"{name!r} is reserved (/health/{name} means something else)")
            if members is None:
                members = []
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                self.problem(path, "a group is a list of check names")
                continue
            for index, member in enumerate(members):
                if member not in known:
                    self.problem(path + (index,), f"unknown check {member!r} (configured: {', '.join(known)})")
            configured[name] = tuple(dict.fromkeys(members))
        return with_defaults(configured, (name for name, options in checks.items() if options.critical))

    def _check_dependencies(self, checks: dict[str, CheckOptions], known: dict[str, Any]) -> None:
        """depends_on names configured checks, and never leads back to itself."""
        for name, options in checks.items():
            for index, parent in enumerate(options.depends_on):
                if parent not in known:
                    path = ("checks", name, "depends_on", index)
                    self.problem(path, f"unknown check {parent!r} (configured: {', '.join(known)})")
        for cycle in _cycles({name: options.depends_on for name, options in checks.items()}):
            self.problem(("checks", cycle[0], "depends_on"), f"a cycle: {' -> '.join(cycle + [cycle[0]])}")

    def _section(self, model: type[ProbedModel], data: dict[str, Any], key: str) -> Any:
        value = data.get(key)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.problem((key,), f"{key} must be a mapping")
            return None
        return self._validate_model(model, value, (key,))

    def _validate_checks(self, raw: dict[str, Any], defaults: CommonOptions) -> dict[str, CheckOptions]:
        inherited = defaults.model_dump(exclude_unset=True)
        checks: dict[str, CheckOptions] = {}
        for name, entry in raw.items():
            path: Path_ = ("checks", name)
            if not CHECK_NAME.match(name):
                self.problem(path, "check names use letters, digits, '_', '.', '-' (at most 63)")
                continue
            if not isinstance(entry, dict):
                self.problem(path, "a check must be a mapping with at least a type")
                continue
            type_name = entry.get("type")
            if type_name is None:
                self.problem(path, f"type is missing (one of: {', '.join(known_types())})")
                continue
            if not isinstance(type_name, str):
                self.problem(path + ("type",), f"type must be a name (one of: {', '.join(known_types())})")
                continue
            try:
                model = load_type(type_name).options_model
            except TypeUnavailable as exc:
                self.problem(path + ("type",), str(exc))
                continue
            options = self._validate_model(model, {**inherited, **entry}, path)
            if options is not None:
                checks[name] = options
        return checks

    def _validate_model(self, model: type[ProbedModel], data: dict[str, Any], path: Path_) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        for error in errors:
            self._report(error, data, path)
        # pydantic runs a model's rules (those comparing two keys) only once
        # every key is valid. Run them again without the wrong keys, so that
        # every mistake is reported at once.
        wrong = {error["loc"][0] for error in errors if error["loc"]}
        if wrong:
            try:
                model.model_validate({key: value for key, value in data.items() if key not in wrong})
            except ValidationError as exc:
                for error in exc.errors(include_url=False):
                    if not error["loc"]:  # model rules only: the rest was reported above
                        self._report(error, data, path)
        return None

    def _report(self, error: Any, data: dict[str, Any], path: Path_) -> None:
        loc = path + tuple(part for part in error["loc"] if _is_key(part))
        if loc == path and self._has_unusable_value(path):
            return  # a model rule about a value we could not read (a missing ${VAR}) would mislead
        message = _describe(error)
        # "key: why" from a model-level validator belongs to that key.
        key, sep, rest = message.partition(": ")
        if sep and loc == path and key in data:
            loc, message = (*path, key), rest
        if loc not in self.reported:
            self.problem(loc, message)

    def _has_unusable_value(self, path: Path_) -> bool:
        return any(place[: len(path)] == path for place in self.reported)


def _check_depth(text: str) -> None:
    """Refuse deep nesting and floods of values from the event stream, before
    composing: PyYAML's scanner slows with every open level ([[[[... took
    seconds per thousand) and its composer recurses."""
    depth = 0
    for count, event in enumerate(yaml.parse(text, Loader=_LOADER)):
        if count > 2 * MAX_VALUES:  # keys and values
            raise _Unreadable(f"the document has over {MAX_VALUES:,} values", _line(event))
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Unreadable(f"the document is nested too deeply (at most {MAX_DEPTH} levels)", _line(event))
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


def config_secrets(data: Any, secret: bool = False) -> set[str]:
    """Every secret value written in the config data, in every form probed derives.

    Read before validation (a secret pasted into the wrong field must be known
    to mask that field's error): values under secret-named keys, passwords of
    URLs anywhere, and what a ${VAR} brought in there.
    """
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            found |= config_secrets(value, secret or _is_secret_key(str(key)))
            if str(key).endswith("_file") and _is_secret_key(str(key).removesuffix("_file")):
                found |= _file_secret(key, value)
    elif isinstance(data, list):
        for item in data:
            found |= config_secrets(item, secret)
    elif isinstance(data, str):
        found |= secret_forms(data) if secret and data else url_secrets(data)
    elif secret and isinstance(data, (int, float)) and not isinstance(data, bool):
        found.add(str(data))
    return found


def _file_secret(key: str, path: Any) -> set[str]:
    """The secret a *_file names, so that it is masked even where pasted by hand."""
    if not isinstance(path, str) or not path:
        return set()
    try:
        return secret_forms(read_secret_file(key, Path(path)))
    except ValueError:
        return set()  # validation reports the unreadable file


def _is_secret_key(key: str) -> bool:
    # *_file holds a path, not the secret; key_prefix names where probe keys go.
    return bool(_SECRET_KEY.search(key)) and not key.endswith("_file") and key != "key_prefix"


def _cycles(edges: Mapping[str, tuple[str, ...]]) -> list[list[str]]:
    """Each dependency cycle once, as the list of its checks (depth-first search)."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            found.append(path[path.index(name) :])
            return
        if name in done or name not in edges:
            return
        for parent in edges[name]:
            visit(parent, path + [name])
        done.add(name)

    for name in edges:
        visit(name, [])
    return found


def _with_server_heartbeat_token(checks: dict[str, CheckOptions], token: SecretStr) -> dict[str, CheckOptions]:
    """Heartbeat checks without a token of their own take the server-wide one."""
    return {
        name: options.model_copy(update={"token": token})
        if options.type == "heartbeat" and getattr(options, "token", None) is None
        else options
        for name, options in checks.items()
    }


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")

# libyaml's parser when PyYAML has it: the same documents, ten times faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STANDARD_TAG = "tag:yaml.org,2002:"
_MERGE_TAG = _STANDARD_TAG + "merge"
# Keys whose values are secrets (every SecretStr field matches; tests/test_config.py proves it).
_SECRET_KEY = re.compile(rf"{SENSITIVE_NAME.pattern}|dsn", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MAX_SHOWN = 80

# Inputs under these keys are never echoed back in an error message.
_SECRET_HINTS = ("password", "token", "secret", "key", "dsn", "url", "header", "auth", "body")


def _is_key(part: str | int) -> bool:
    # pydantic puts union branches and validator names into locations; keep keys.
    return isinstance(part, int) or not any(c in part for c in "[]()")


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    key = str(error["loc"][-1]) if error["loc"] else ""
    value = error.get("input")
    if (
        kind != "value_error"
        and isinstance(value, (str, int, float))
        and not any(h in key.lower() for h in _SECRET_HINTS)
    ):
        message += f" (got {_shown(value)})"
    return message


def _shown(value: object) -> str:
    """A value as an error message may echo it: quoted, and short."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 4] + "...'"


def _one_line(text: str) -> str:
    """Problems are one line each: escape line breaks and control characters."""
    return _CONTROL.sub(lambda match: repr(match[0])[1:-1], text)


def _dotted(path: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else _short_key(p) for p in path).replace(".[", "[")


def _short_key(key: str) -> str:
    if not key or key != key.strip():
        return repr(key)  # an empty or blank key stays visible
    return key if len(key) <= 64 else key[:61] + "..."


# -- JSON Schema ----------------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file, for editors: every type's options,
    plugins included (types whose extra is missing are described all the same)."""
    models = tuple(m for m in (_options_model(name) for name in known_types()) if m is not None)
    check_entry = Annotated[Union[models], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007  (a runtime tuple of types)
    model = create_model(
        "ProbedConfig",
        __base__=_Sections,
        checks=(dict[str, check_entry], Field(description="checks by name")),
    )
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "probed configuration"
    return schema


def _options_model(type_name: str) -> type[CheckOptions] | None:
    """A type's options model, whether or not its driver is installed."""
    try:
        return load_type(type_name, need_driver=False).options_model
    except TypeUnavailable:
        return None


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


# -- the schedule ------------------------------------------------------------------------


def hang_demand(checks: Iterable[CheckOptions]) -> float:
    """Runs in flight at once when every target hangs: each run then lasts
    its whole timeout, once per interval."""
    return sum(opts.timeout / opts.interval for opts in checks)


def saturation_warning(checks: Iterable[CheckOptions], max_concurrency: int) -> str | None:
    demand = hang_demand(checks)
    if demand <= max_concurrency:
        return None
    return (
        f"scheduler.max_concurrency {max_concurrency} is below the {demand:.0f} runs at once "
        "the checks need when their targets hang (the sum of timeout / interval): runs would start late"
    )
