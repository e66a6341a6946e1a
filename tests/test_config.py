"""Configuration: every mistake reported with its place, and what valid files mean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from probed import checks
from probed.checks import known_types
from probed.config import BUILTIN_SOURCE, ConfigError, config_path, load_config, parse_config
from probed.fields import parse_duration, parse_size

CONFIGS = Path(__file__).parent / "configs"
TYPES = ", ".join(known_types())  # every type probed knows, as the errors list them

# Each bad file, paired with exactly what `probed validate` must say about it.
INVALID = {
    "invalid-unknown-key.yaml": ["5: checks.web.intervall: unknown key"],
    "invalid-wrong-type.yaml": [
        "5: checks.web.failure_threshold: Input should be a valid integer, "
        "unable to parse string as an integer (got 'many')",
        "6: checks.web.critical: Input should be a valid boolean, unable to interpret input (got 'maybe')",
    ],
    "invalid-duration.yaml": ["7: checks.web.timeout: invalid duration '3 seconds' (use 500ms, 10s, 1m or seconds)"],
    "invalid-unknown-type.yaml": [f"3: checks.db.type: unknown check type 'postgress' (one of: {TYPES})"],
    "invalid-missing-type.yaml": [f"2: checks.db: type is missing (one of: {TYPES})"],
    "invalid-duplicate-name.yaml": ["5: checks.web: duplicate key (first defined at line 2)"],
    "invalid-missing-variable.yaml": [
        "4: checks.web.url: environment variable PROBED_TEST_UNSET_URL is not set "
        "(write ${PROBED_TEST_UNSET_URL:-default} for a default)"
    ],
    "invalid-timeout-not-shorter.yaml": ["2: checks.web: timeout (5s) must be shorter than interval (2s)"],
    "invalid-phase.yaml": ["2: checks.web: phase (2s) must be shorter than interval (2s)"],
    "invalid-yaml-syntax.yaml": ["5: invalid YAML: did not find expected ',' or ']'"],
    "invalid-no-checks.yaml": [" checks: no checks configured: add at least one"],
    "invalid-not-a-mapping.yaml": [" the config must be a mapping with server, defaults and checks"],
    "invalid-defaults.yaml": [
        "2: defaults.intervall: unknown key",
        "3: defaults.timeout: invalid duration '-1s' (use 500ms, 10s, 1m or seconds)",
    ],
    "invalid-secret-file.yaml": [
        "5: checks.web.bearer_token_file: cannot read /nonexistent/probed-token: No such file or directory"
    ],
    "invalid-secret-twice.yaml": ["2: checks.web: give bearer_token or bearer_token_file, not both"],
    "invalid-server.yaml": [
        "2: server.listen: listen must be host:port with a port from 1 to 65535, got 'localhost'",
        "3: server.details: token needs token or token_file",  # a rule on two keys, beside a wrong key
        "4: server.port: unknown key",
    ],
    "invalid-missing-required.yaml": ["2: checks.web.url: required key is missing"],
    "invalid-disk-levels.yaml": ["2: checks.data: warn_free_percent (5) must not be below fail_free_percent (20)"],
    "invalid-check-name.yaml": ["2: checks.my check!: check names use letters, digits, '_', '.', '-' (at most 63)"],
    "invalid-http-options.yaml": [
        "4: checks.web.url: url must be an absolute http:// or https:// URL",
        "5: checks.web.method: Input should be 'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE' or 'OPTIONS' "
        "(got 'FETCH')",
        "6: checks.web.expect_status: entries are codes like 200 or classes like 2xx, got '2x'",
        "7: checks.web.expect_body_regex: invalid regular expression: missing ), unterminated subpattern at position 0",
        "9: checks.web.headers.Authorization: Input should be a valid string",  # the value is not echoed
    ],
    # Rules comparing two keys run even beside a wrong key; every wrong entry is named.
    "invalid-rules-beside-wrong-keys.yaml": [
        "2: checks.web: timeout (5s) must be shorter than interval (2s)",
        "7: checks.web.failure_threshold: Input should be greater than or equal to 1 (got 0)",
        "8: checks.web.expect_status: entries are codes like 200 or classes like 2xx, got 999, '6xx'",
    ],
    # Only the missing variable: not also "give either dsn or host" about the value it left empty.
    "invalid-missing-variable-dsn.yaml": [
        "4: checks.db.dsn: environment variable PROBED_TEST_UNSET_DSN is not set "
        "(write ${PROBED_TEST_UNSET_DSN:-default} for a default)"
    ],
    # aiohttp refuses such a request on every run: a config error instead.
    "invalid-http-two-authorizations.yaml": [
        "2: checks.web: give one way to authenticate, not credentials in url and an Authorization header"
    ],
    "invalid-many.yaml": [
        "2: server.listen: listen must be host:port with a port from 1 to 65535, got '0.0.0.0:99999'",
        "7: checks.web.timeout: invalid duration 'soon' (use 500ms, 10s, 1m or seconds)",
        "11: checks.root.write_test: Input should be a valid boolean, unable to interpret input (got 'perhaps')",
        "12: checks.root.fail_free_bytes: invalid size 'lots' (use 500MB, 10GiB or bytes)",
        f"14: checks.db.type: unknown check type 'nosuchkind' (one of: {TYPES})",
        "15: extra: unknown key (expected server, scheduler, defaults, groups, peers, checks)",
    ],
    "invalid-groups.yaml": [
        "4: groups.ready[1]: unknown check 'dbb' (configured: db)",
        "5: groups.checks: 'checks' is reserved (/health/checks means something else)",
        "6: groups.bad name!: group names use letters, digits, '_', '.', '-' (at most 63)",
        "7: groups.payments: a group is a list of check names",
    ],
    "invalid-depends-on.yaml": [
        "2: checks.a.depends_on: a cycle: a -> b -> c -> a",
        "5: checks.d.depends_on[0]: unknown check 'nosuch' (configured: a, b, c, d, e)",
        "6: checks.e.depends_on: a cycle: e -> e",
    ],
    "invalid-peers.yaml": [
        "1: peers: give dns (with port) or static, exactly one of them",  # reported beside the wrong keys
        "4: peers.quorum: Input should be less than 1 (got 2)",
        "5: peers.alone: Input should be 'fail' or 'pass' (got 'maybe')",
        "6: peers.resolver: resolver takes host:port with a port from 1 to 65535, got 'nowhere'",
        "7: peers.sample: Input should be greater than or equal to 1 (got 0)",
        "9: checks.db.scope: Input should be 'local' or 'shared' (got 'everywhere')",
    ],
    "invalid-peers-source.yaml": ["1: peers: give dns (with port) or static, exactly one of them"],
    # On one line, problems list in the order the line reads, whichever step found them;
    # the models' problems after the line's reading ones.
    "invalid-one-line.yaml": [
        "4: checks.web.interval: unsupported YAML tag '!secret' "
        "(write plain values; secrets come from ${VAR} or *_file)",
        "4: checks.web.url: environment variable PROBED_TEST_UNSET_URL is not set "
        "(write ${PROBED_TEST_UNSET_URL:-default} for a default)",
        "4: checks.web.url: duplicate key (first defined at line 4)",
        "4: checks.web.timeout: invalid duration 'soon' (use 500ms, 10s, 1m or seconds)",
    ],
    # Reading stops at a cycle: what came before keeps its problems, nothing after is read or built.
    "invalid-alias-cycle.yaml": [
        "2: checks.web.url: environment variable PROBED_TEST_UNSET_URL is not set "
        "(write ${PROBED_TEST_UNSET_URL:-default} for a default)",
        "3: an alias refers to a value that contains it",
    ],
}


def test_every_invalid_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CONFIGS.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_is_reported_line_by_line(name: str) -> None:
    path = str(CONFIGS / name)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    expected = [f"{path}:{line}" for line in INVALID[name]]
    assert caught.value.problems == expected


@pytest.mark.parametrize("name", ["invalid-unknown-key.yaml", "invalid-many.yaml"])
def test_validate_exits_2_with_one_line_per_problem(name: str) -> None:
    path = str(CONFIGS / name)
    done = subprocess.run(
        [sys.executable, "-m", "probed", "validate", "--config", path], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"{path}:{line}" for line in INVALID[name]]


def test_example_config_is_valid_as_shipped() -> None:
    example = Path(__file__).parent.parent / "config" / "probed.example.yaml"
    config = load_config(str(example), environ={})  # no variable it does not document a default for
    assert {c.type for c in config.checks.values()} == set(checks.TYPES)  # it shows every built-in type


def test_a_short_interval_alone_gets_a_shorter_default_timeout() -> None:
    config = parse_config("checks:\n  a: {type: disk, path: /, interval: 1s}\n  b: {type: disk, path: /}\n", "t.yaml")
    assert (config.checks["a"].interval, config.checks["a"].timeout) == (1.0, 0.8)
    assert config.checks["b"].timeout == 3.0
    with pytest.raises(ConfigError):  # an explicit timeout is still held to the rule
        parse_config("checks:\n  a: {type: disk, path: /, interval: 1s, timeout: 1s}\n", "t.yaml")


def test_builtin_default_is_a_disk_check_on_root() -> None:
    config = load_config(None)
    assert config.source == BUILTIN_SOURCE
    [(_name, check)] = config.checks.items()
    assert check.type == "disk"
    assert str(check.path) == "/"  # type: ignore[attr-defined]


def test_config_path_precedence() -> None:
    assert config_path("cli.yaml", {"PROBED_CONFIG": "env.yaml"}) == "cli.yaml"
    assert config_path(None, {"PROBED_CONFIG": "env.yaml"}) == "env.yaml"
    assert config_path(None, {}) is None


def test_defaults_are_inherited_and_overridden() -> None:
    config = parse_config(
        """
defaults:
  interval: 30s
  timeout: 2s
  failure_threshold: 3
  critical: false
checks:
  a: {type: disk, path: /}
  b: {type: disk, path: /, interval: 1m, critical: true}
""",
        "t.yaml",
    )
    a, b = config.checks["a"], config.checks["b"]
    assert (a.interval, a.timeout, a.failure_threshold, a.critical) == (30, 2, 3, False)
    assert (b.interval, b.timeout, b.failure_threshold, b.critical) == (60, 2, 3, True)
    assert a.success_threshold == 1


def test_environment_substitution() -> None:
    text = """
checks:
  web:
    type: http
    url: http://${HOST}:${PORT:-8080}/health?x=$${literal}
    interval: ${INTERVAL:-15s}
    critical: ${CRITICAL}
"""
    config = parse_config(text, "t.yaml", {"HOST": "api.internal", "CRITICAL": "false"})
    web = config.checks["web"]
    assert web.url == "http://api.internal:8080/health?x=${literal}"  # type: ignore[attr-defined]
    assert web.interval == 15
    assert web.critical is False


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!!set", "!!omap"])
def test_a_mapping_tagged_as_something_else_is_refused(tag: str) -> None:
    text = f"checks: {tag}\n  root: {{type: disk, path: /}}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml", {})
    assert caught.value.problems[0].startswith(f"t.yaml:1: checks: unsupported YAML tag '{tag}'"), caught.value


def test_a_secret_variable_misplaced_is_not_echoed() -> None:
    """A password variable put where a number belongs: the problem names the
    place and masks the value, as for any other secret of the file."""
    text = "checks:\n  db: {type: tcp, host: db, port: '${DB_PASSWORD}', timeout: '${TIMEOUT}'}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "t.yaml", {"DB_PASSWORD": "hunter2Secret", "TIMEOUT": "soon"})
    said = "\n".join(caught.value.problems)
    assert "hunter2Secret" not in said and "checks.db.port" in said, said
    assert "soon" in said  # a variable that names no secret is shown as it was


def test_a_literal_dollar_beside_a_variable_from_the_real_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.environ refuses to be asked about a non-name: $$ matches no variable."""
    monkeypatch.setenv("PROBED_TEST_PASSWORD", "s3cret")
    text = "checks:\n  job: {type: command, command: ['sh', '-c', 'kill $$$$ ${PROBED_TEST_PASSWORD}']}\n"
    config = parse_config(text, "t.yaml")  # the default: os.environ itself
    assert config.checks["job"].command[-1] == "kill $$ s3cret"  # type: ignore[attr-defined]


def test_empty_variable_leaves_an_optional_field_unset() -> None:
    text = "checks:\n  web: {type: http, url: 'http://x/', ca_file: '${CA_FILE:-}'}\n"
    config = parse_config(text, "t.yaml", {})
    assert config.checks["web"].ca_file is None  # type: ignore[attr-defined]


def test_secret_from_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    text = f"checks:\n  web: {{type: http, url: 'http://x/', bearer_token_file: {tmp_path / 'token'}}}\n"
    token = parse_config(text, "t.yaml").checks["web"].bearer_token  # type: ignore[attr-defined]
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(parse_config(text, "t.yaml"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("10s", 10), ("1m", 60), ("1.5h", 5400), (3, 3), ("2", 2), (0.25, 0.25)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("500MB", 500_000_000), ("10GiB", 10 * 2**30), (42, 42), ("1.5k", 1500)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_schema_describes_every_kind() -> None:
    done = subprocess.run([sys.executable, "-m", "probed", "schema"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    schema = json.loads(done.stdout)
    assert schema["properties"].keys() >= {"server", "defaults", "checks"}
    assert {"DiskOptions", "HttpOptions"} <= schema["$defs"].keys()
    assert schema["$defs"]["HttpOptions"]["additionalProperties"] is False


def test_groups_default_to_the_critical_checks_and_say_what_gates_readiness() -> None:
    text = """
checks:
  db: {type: disk, path: /}
  cache: {type: disk, path: /tmp, critical: false}
"""
    config = parse_config(text, "t.yaml")
    assert dict(config.groups) == {"ready": ("db",), "startup": ("db",), "live": ()}
    text += """
groups:
  ready: [db, cache]
  payments: [cache]
  live:
"""
    config = parse_config(text, "t.yaml")
    assert dict(config.groups) == {
        "ready": ("db", "cache"),
        "startup": ("db", "cache"),
        "live": (),
        "payments": ("cache",),
    }
