"""YAML -> validated, immutable configuration; every problem reported with its place.

Loading goes in three steps, each collecting problems instead of stopping at
the first (parse_config runs them): read the YAML into plain data while
remembering the line of every key (probed/config_read.py), substitute
`${VAR}` / `${VAR:-default}` from the environment (probed/config_env.py), then
build the models here: the sections, and each check against its type's options
model. All three add to one list (probed/config_problems.py), which gives each
problem one line, with its place, in reading order.

Whatever the document, loading ends in a Config or in ConfigError: size,
depth and value counts are bounded, YAML tags are refused without echoing
their value, and every problem is one line with the config's secret values
masked (tests/test_config_properties.py feeds it arbitrary documents).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator, model_validator

from probed.checks import TypeUnavailable, installed, known_types, load_type
from probed.checks.base import CheckOptions, CommonOptions
from probed.checks.push import with_token_default
from probed.config_env import substitute
from probed.config_problems import Path_, Problems, shown
from probed.config_read import MAX_CONFIG_BYTES, read_yaml
from probed.environ import USER_ENVIRON
from probed.fields import Delay, Duration, ProbedModel, read_secret_file
from probed.groups import with_defaults
from probed.secrets import SENSITIVE_NAME, secret_forms, url_secrets

BUILTIN_SOURCE = "<built-in default>"
BUILTIN_CONFIG = """\
# probed's built-in default: watch the free space of the root filesystem.
checks:
  root-disk:
    type: disk
    path: /
"""

CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


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
        None, description="bearer token for POST /heartbeat/{name}, for push checks without a token of their own"
    )
    heartbeat_token_file: Path | None = Field(None, description="file holding the heartbeat token")
    exclusions_token: SecretStr | None = Field(
        None,
        description="bearer token for the operators' exclusions API (/health/{group}/exclusions); "
        "without it the API is off (403)",
    )
    exclusions_token_file: Path | None = Field(None, description="file holding the exclusions token")
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
        None,
        description="ip:port of the DNS server that resolves dns (default: the system resolver); "
        "needs dnspython: pip install 'probed[dns]'",
    )
    sample: int = Field(
        10,
        ge=1,
        description="peers asked about a failing shared check, drawn at random from the addresses; "
        "those that answer are kept for the failure, the others replaced",
    )
    timeout: Duration = Field(1.0, description="a peer that has not answered in this time is unreachable")
    quorum: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="a shared outage needs more than this share of the counted replicas (itself "
        "included) to see a shared check failing; a tie at 0.5 is a local fault",
    )
    alone: Literal["fail", "pass"] = Field(
        "fail", description="when no peer answers: fail gates readiness (this replica is the one cut off), pass not"
    )

    @field_validator("resolver")
    @classmethod
    def _valid_resolver(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, _ = _host_port(value, "resolver")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"resolver takes an IP address and a port, got {value!r}") from None
        if not installed("dns.asyncresolver"):
            raise ValueError("needs dnspython (the DNS client that asks it): pip install 'probed[dns]'")
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
    # SHA-256 of the text read: a reload of the same text (and the same named
    # files) changes nothing. None when built otherwise.
    digest: str | None = dataclasses.field(default=None, compare=False)


# -- loading ------------------------------------------------------------------


def config_path(cli_value: str | None, environ: Mapping[str, str] = USER_ENVIRON) -> str | None:
    """--config, then PROBED_CONFIG, then None for the built-in default."""
    return cli_value or environ.get("PROBED_CONFIG") or None


def load_config(path: str | None, environ: Mapping[str, str] = USER_ENVIRON) -> Config:
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


def parse_config(text: str, source: str, environ: Mapping[str, str] = USER_ENVIRON) -> Config:
    """The three steps, each adding to one list of problems: read, substitute, build."""
    problems = Problems(source)
    document = read_yaml(text, problems)
    data = substitute(document.data, environ, problems)
    # Nothing to build from a document read only in part (its problem says why).
    config = _Builder(problems).build({} if data is None else data) if document.whole else None
    if problems:
        raise ConfigError(problems.listed())
    assert config is not None
    return dataclasses.replace(config, digest=text_digest(text))


def text_digest(text: str) -> str:
    """The digest of a config's text, as its file's bytes give it (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()


class _Builder:
    """Step 3: read data -> Config, each section and each check against its options model."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.source = problems.source

    def problem(self, path: Path_, message: str) -> None:
        self.problems.add(path, message)

    def build(self, data: Any) -> Config | None:
        if not isinstance(data, dict):
            self.problem((), "the config must be a mapping with server, defaults and checks")
            return None
        self.problems.secrets |= config_secrets(data)
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
        if server is not None:  # push checks without a token take the server's
            checks = {name: with_token_default(options, server) for name, options in checks.items()}
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
        if loc not in self.problems.unusable:
            self.problem(loc, message)

    def _has_unusable_value(self, path: Path_) -> bool:
        return any(place[: len(path)] == path for place in self.problems.unusable)


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


# Keys whose values are secrets (every SecretStr field matches; tests/test_config.py proves it).
_SECRET_KEY = re.compile(rf"{SENSITIVE_NAME.pattern}|dsn", re.IGNORECASE)

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
        message += f" (got {shown(value)})"
    return message


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
