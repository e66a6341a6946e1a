"""Property tests of the config loader: whatever the document, a verdict.

Any YAML document, and any value in any field of any check type, ends in a
Config or in problems that are one line each (`source:line: ...` or
`source: ...`): never another exception, never a configured secret echoed.
A table of known-hostile files runs through `probed validate` itself.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from probed.checks import TYPES, create_check, load_type
from probed.checks.base import CommonOptions
from probed.config import (
    Config,
    ConfigError,
    SchedulerOptions,
    ServerOptions,
    _is_secret_key,
    load_config,
    parse_config,
)
from probed.secrets import MIN_MASKED_LENGTH, maskable
from tests.support.probed import run_probed

SOURCE = "fuzz.yaml"
PROBLEM = re.compile(rf"^{re.escape(SOURCE)}(:\d+)?: \S")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# The least each type needs to be valid: every other field is fuzzed on top.
BASE: dict[str, dict[str, Any]] = {
    "disk": {"path": "/tmp"},
    "http": {"url": "http://127.0.0.1:1/health"},
    "postgres": {"host": "127.0.0.1"},
    "redis": {},
    "smtp": {"host": "127.0.0.1"},
    "s3": {"bucket": "b"},
    "websocket": {"url": "ws://127.0.0.1:1/"},
    "udp": {"host": "127.0.0.1", "port": 1, "send": "x"},
    "icmp": {"host": "127.0.0.1"},
}  # a type not listed needs nothing beyond its type
SECTIONS: dict[str, type[BaseModel]] = {
    "server": ServerOptions,
    "scheduler": SchedulerOptions,
    "defaults": CommonOptions,
}
FIELDS = sorted(
    [(kind, field) for kind in TYPES for field in load_type(kind).options_model.model_fields]
    + [(section, field) for section, model in SECTIONS.items() for field in model.model_fields]
)

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**80), max_value=10**80),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(["10s", "0s", "-1s", "1e400", "500MB", "2xx", "GET", "http://[::1", "postgres://u@h/db", "${X}"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
# Secrets that are long enough to be masked (the policy), with the characters that need encoding.
secrets = st.text(st.sampled_from("abcXYZ019@:/%+ ?&=#"), min_size=MIN_MASKED_LENGTH, max_size=16).map(
    lambda s: f"Zq{s}"
)


def assert_verdict(text: str, secret: str | None = None) -> Config | None:
    try:
        config = parse_config(text, SOURCE, environ={})
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert len(problem.splitlines()) == 1 and PROBLEM.match(problem), problem
            assert secret is None or secret not in problem, problem
        return None
    for name, options in config.checks.items():
        check = create_check(name, options)  # a valid config builds, and names its target without its secrets
        assert not [s for s in maskable(check.masked) if s in check.target], check.target
    return config


@PROPERTY
@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=300))
def test_any_text_ends_in_a_verdict(document: str) -> None:
    assert_verdict(document)


YAML_BITS = st.sampled_from(
    [
        "checks:", "\n", "  ", "a:", " b", "- ", "[", "]", "{", "}", ",", ": ", "!vault ", "!!int ", "!!binary ",
        "!!set ", "!!python/object ", "&x ", "*x", "<<: ", "? ", "|", ">", "'", '"', "#", "type: http", "url: ",
        "type: disk", "path: /", "1", "true", "null", "~", "${A}", "$$", "10s", "--- ", "...", "%YAML 1.1\n",
    ]
)  # fmt: skip


@PROPERTY
@given(st.lists(YAML_BITS | text, max_size=40).map("".join))
def test_yaml_like_text_ends_in_a_verdict(document: str) -> None:
    assert_verdict(document)


@PROPERTY
@given(st.dictionaries(text | st.sampled_from(["server", "scheduler", "defaults", "checks"]), values, max_size=5))
def test_any_document_shape_ends_in_a_verdict(document: dict[str, Any]) -> None:
    assert_verdict(yaml.safe_dump(document, allow_unicode=True))


@PROPERTY
@given(
    field=st.sampled_from(FIELDS),
    value=values,
    secret=secrets,
    pasted=st.sampled_from(["no", "alone", "inside", "list", "key"]),
    where=st.sampled_from(["server.token", "url password", "secret field"]),
)
def test_any_value_in_any_field_ends_in_a_verdict_without_the_secret(
    field: tuple[str, str], value: Any, secret: str, pasted: str, where: str
) -> None:
    kind, name = field
    value = {"no": value, "alone": secret, "inside": f"x{secret}x", "list": [value, secret], "key": {secret: value}}[
        pasted
    ]
    document: dict[str, Any] = {"checks": {"fuzzed": {"type": kind, **BASE.get(kind, {}), name: value}}}
    if kind in SECTIONS:
        document = {kind: {name: value}, "checks": {"fuzzed": {"type": "disk", "path": "/tmp"}}}
    if where == "server.token":
        document["server"] = {"details": "token", "token": secret, **document.get("server", {})}
    elif where == "url password":
        document["checks"]["other"] = {"type": "http", "url": f"http://probe:{quote(secret, safe='')}@127.0.0.1:1/"}
    else:
        document["checks"]["other"] = {"type": "postgres", "host": "db", "password": secret}
    assert_verdict(yaml.safe_dump(document, allow_unicode=True), secret)


def test_every_secret_field_is_known_to_the_loader_as_secret() -> None:
    """The loader masks values under secret-looking keys before validation:
    every SecretStr field of every type must look like one."""
    models: list[type[BaseModel]] = [ServerOptions, *(load_type(kind).options_model for kind in TYPES)]
    seen: set[str] = set()
    while models:
        model = models.pop()
        for name, info in model.model_fields.items():
            annotation = str(info.annotation)
            if "SecretStr" in annotation or info.annotation is SecretStr:
                seen.add(name)
                assert _is_secret_key(name), name
            nested = getattr(info.annotation, "model_fields", None)
            if nested is not None:
                models.append(info.annotation)  # type: ignore[arg-type]
    assert {"token", "password", "dsn", "bearer_token", "secret_access_key"} <= seen


# -- through the CLI: exit 2, one line per problem, no traceback, no secret ------------------------

SECRET = "hunter2-Vault-Secret"
HOSTILE = {
    "custom-tag": f"checks:\n  web: {{type: http, url: !vault '{SECRET}'}}\n",
    "bad-int-tag": f"server: {{token: {SECRET}}}\nscheduler: {{max_concurrency: !!int '{SECRET}'}}\nchecks: {{}}\n",
    "binary-tag": "checks:\n  web: {type: http, url: !!binary 'aGVsbG8='}\n",
    "python-tag": "checks: !!python/object:os.system {}\n",
    "alias-cycle": "checks: &a\n  web: *a\n",
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6))
    + "checks: *g\n",
    "deep": "checks: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep-mappings": "checks:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
    "non-string-keys": "checks:\n  1: {type: disk, path: /}\n  [a]: {type: disk}\n  {b: c}: x\n  null: y\n",
    "list-type": "checks:\n  web: {type: [http]}\n",
    "merge-key": "base: &b {interval: 5s}\nchecks:\n  web: {<<: *b, type: disk, path: /}\n",
    "infinite-size": "checks:\n  web: {type: http, url: 'http://x/', max_body_bytes: 1e400}\n",
    "infinite-duration": "checks:\n  web: {type: disk, path: /, interval: .inf}\n",
    "newline-key": 'checks:\n  "a\\nb\\u2028c": {type: disk, path: /}\n',
    "secret-in-port": f"checks:\n  db: {{type: postgres, host: h, password: '{SECRET}', port: '{SECRET}'}}\n",
    "secret-in-details": f"server: {{details: '{SECRET}', token: '{SECRET}'}}\n"
    "checks: {d: {type: disk, path: /}}\n",
    "secret-in-status": "checks:\n  web: {type: http, url: 'http://u:"
    + SECRET
    + f"@x/', expect_status: [999, '{SECRET}'], interval: '{SECRET}'}}\n",
    "endless-secret-file": "server: {details: token, token_file: /dev/zero}\nchecks: {d: {type: disk, path: /}}\n",
    "endless-config-file": "",  # the test passes /dev/zero itself
    "huge": "checks:\n" + "  x: " + "a" * 1_100_000 + "\n",
    "not-utf8": "checks: \udcff\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_end_in_one_line_problems(tmp_path: Path, name: str) -> None:
    path = Path("/dev/zero") if name == "endless-config-file" else tmp_path / f"{name}.yaml"
    if HOSTILE[name]:
        path.write_bytes(HOSTILE[name].encode("utf-8", errors="surrogateescape"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), environ={})
    assert caught.value.problems
    for problem in caught.value.problems:
        assert re.match(rf"^{re.escape(str(path))}(:\d+)?: \S", problem) and len(problem.splitlines()) == 1, problem
        assert SECRET not in problem


@pytest.mark.parametrize("name", ["custom-tag", "alias-bomb", "secret-in-details"])  # a sample: each costs a process
def test_hostile_files_exit_2_from_the_cli(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(HOSTILE[name].encode("utf-8", errors="surrogateescape"))
    done = run_probed("validate", "--config", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines and all(re.match(rf"^{re.escape(str(path))}(:\d+)?: \S", line) for line in lines), lines
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr
