"""The documentation stays true to the code: README.md is a short front door,
docs/ holds the reference, and both are read here against what they describe.

- every relative link and anchor resolves;
- every YAML example is a config `probed validate` accepts, unless a comment
  just before it says otherwise (`<!-- copy of PATH -->`: the block is that
  file, verbatim; `<!-- not a probed config: WHY -->`; `<!-- invalid probed
  config: WHY -->`: validate must refuse it);
- every option of every check type (read from the type's options model,
  through the table of types), of `server`, `scheduler`, `defaults`,
  `groups` and `peers` is on its page, every metric family the exposition
  can produce and every route is documented.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from pydantic import BaseModel

from probed.checks import TYPES, load_type
from probed.checks.base import CommonOptions
from probed.config import (
    RESERVED_GROUPS,
    PeersOptions,
    SchedulerOptions,
    ServerOptions,
    parse_config,
    schema_text,
)
from probed.groups import KINDS

if TYPE_CHECKING:
    from probed.daemon import Daemon

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
README_MAX_LINES = 350

# What the examples read from the environment, as a deployment would set it.
EXAMPLE_ENVIRONMENT = {
    "DATABASE_URL": "postgresql://shop@db.internal:5432/shop",
    **dict.fromkeys(
        ["MONITOR_PASSWORD", "SMTP_PASSWORD", "MINIO_SECRET_KEY", "HEARTBEAT_TOKEN", "NATS_TOKEN"]
        + ["MQTT_PASSWORD", "MYSQL_PASSWORD", "AMQP_PASSWORD", "LDAP_PASSWORD", "SSH_PASSWORD", "FEED_TOKEN"],
        "example-secret",
    ),
}


def text(page: Path) -> str:
    return page.read_text()


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


# -- reading Markdown -----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block, with the HTML comment on the line before it, if any."""

    page: Path
    line: int
    language: str
    body: str
    note: str | None

    @property
    def id(self) -> str:
        return f"{name(self.page)}:{self.line}"


FENCE = re.compile(r"^(\s*)(`{3,})(\w*)")
NOTE = re.compile(r"^<!--\s*(.*?)\s*-->$")


def blocks(page: Path) -> Iterator[Block]:
    lines = text(page).splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence, language = opening.groups()
        before = lines[index - 1].strip() if index else ""
        note = NOTE.match(before)
        body: list[str] = []
        index += 1
        while not lines[index].strip().startswith(fence):
            body.append(lines[index][len(indent) :])
            index += 1
        start = index - len(body)
        yield Block(page, start, language, "\n".join(body) + "\n", note[1] if note else None)
        index += 1


def prose(page: Path) -> str:
    """The page without its code blocks and inline code: where links and headings are."""
    kept: list[str] = []
    in_block: str | None = None
    for line in text(page).splitlines():
        fence = FENCE.match(line)
        if fence and (in_block is None or line.strip().startswith(in_block)):
            in_block = fence[2] if in_block is None else None
            continue
        if in_block is None:
            kept.append(line if line.startswith("#") else re.sub(r"`[^`]*`", "``", line))  # headings keep theirs
    return "\n".join(kept)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors: headings lowercased, punctuation dropped, spaces as hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", prose(page), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        unique, suffix = slug, 0
        while unique in found:
            suffix += 1
            unique = f"{slug}-{suffix}"
        found.add(unique)
    return found


def section(page: Path, heading: str) -> str:
    """The text under `heading` (a whole heading line), up to the next heading of its level or above."""
    content = text(page)
    level = len(heading) - len(heading.lstrip("#"))
    assert f"\n{heading}\n" in f"\n{content}", f"{name(page)} has no heading {heading!r}"
    after = f"\n{content}".split(f"\n{heading}\n", 1)[1]
    ends = re.search(rf"^#{{1,{level}}} ", after, re.MULTILINE)
    return after[: ends.start()] if ends else after


def in_code(page_text: str, word: str) -> bool:
    """Whether `word` is written as code: `word`, or at the start of a code span (`word: ...`)."""
    return re.search(rf"`{re.escape(word)}(`|[ :/{{])", page_text) is not None


# -- the README is a front door --------------------------------------------------------------


def test_readme_is_a_front_door() -> None:
    lines = len(text(README).splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move reference text to docs/"


def test_readme_quick_start_is_two_commands() -> None:
    quick_start = text(README).split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_readme_links_every_page() -> None:
    linked = {(ROOT / target).resolve() for target in re.findall(r"\]\(([^)#]+)", prose(README))}
    pages = {page.resolve() for page in [*DOCS.rglob("*.md"), DOCS / "openapi.yaml"]}
    assert not pages - linked, f"README.md links no {sorted(name(p) for p in pages - linked)}"


def test_readme_sidecar_example_is_the_tested_chart() -> None:
    copies = {block.note for block in blocks(README)}
    chart = ROOT / "tests" / "charts" / "shop"
    files = ["Chart.yaml", "values.yaml", *(f"templates/{p.name}" for p in sorted((chart / "templates").iterdir()))]
    assert {f"copy of tests/charts/shop/{file}" for file in files} <= copies


# -- links -------------------------------------------------------------------------------


def links(page: Path) -> Iterator[str]:
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(page)):
        if not re.match(r"^[a-z]+:", target):  # http:, https:, mailto: are not ours to check
            yield target


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{name(page)}: {broken}"


# -- examples ----------------------------------------------------------------------------


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
NOTES = re.compile(r"^(copy of \S+|not a probed config: .+|invalid probed config: .+)$")


def test_every_note_on_an_example_is_understood() -> None:
    misread = [f"{block.id}: {block.note}" for block in ALL_BLOCKS if block.note and not NOTES.match(block.note)]
    assert not misread


@pytest.mark.parametrize(
    "block", [b for b in ALL_BLOCKS if b.note and b.note.startswith("copy of ")], ids=lambda b: b.id
)
def test_copies_are_the_files_verbatim(block: Block) -> None:
    assert block.note is not None
    path = ROOT / block.note.removeprefix("copy of ")
    assert block.body.rstrip() == path.read_text().rstrip(), f"{block.id}: the copy of {name(path)} is out of date"


YAML_EXAMPLES = [
    block
    for block in ALL_BLOCKS
    if block.language in ("yaml", "yml") and not (block.note or "").startswith(("copy of ", "not a probed config"))
]


@pytest.mark.parametrize("block", YAML_EXAMPLES, ids=lambda b: b.id)
def test_yaml_examples_validate(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from probed.cli import main

    for key, value in EXAMPLE_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "probed.yaml"
    config.write_text(block.body)
    code = main(["validate", "--config", str(config)])
    problems = capsys.readouterr().err
    if (block.note or "").startswith("invalid"):
        assert code == 2, f"{block.id} is marked invalid, but probed validate accepts it"
    else:
        assert code == 0, f"{block.id}: {problems}"


# -- options -----------------------------------------------------------------------------


def own_options(type_name: str) -> list[str]:
    """The options a type adds to those every check has, read from its options model."""
    model = load_type(type_name, need_driver=False).options_model
    return [option for option in model.model_fields if option not in CommonOptions.model_fields and option != "type"]


@pytest.mark.parametrize("type_name", TYPES)
def test_every_option_of_every_type_is_on_its_page(type_name: str) -> None:
    page = DOCS / "checks" / f"{type_name}.md"
    assert page.exists(), f"type {type_name} has no page docs/checks/{type_name}.md"
    content = text(page)
    assert content.startswith(f"# `type: {type_name}`"), f"{name(page)} does not start with its heading"
    missing = [option for option in own_options(type_name) if not in_code(content, option)]
    assert not missing, f"{name(page)} does not document {missing}"
    assert f"({type_name}.md)" in text(DOCS / "checks" / "README.md"), "the table of check types does not link it"


# Options whose description `probed schema` lacks today; a new type has none.
UNDESCRIBED = {
    "http": {"method", "bearer_token_file", "basic_auth", "follow_redirects", "max_redirects"},
    "postgres": {"dsn_file", "port", "database", "sslmode"},
    "s3": {"secret_access_key", "secret_access_key_file", "session_token", "session_token_file"},
    "nats": {"token_file", "nkey_seed_file"},
}


@pytest.fixture(scope="module")
def schema() -> dict[str, dict[str, object]]:
    return dict(json.loads(schema_text())["$defs"])


@pytest.mark.parametrize("type_name", TYPES)
def test_schema_describes_every_option(schema: dict[str, dict[str, object]], type_name: str) -> None:
    definition = schema[load_type(type_name, need_driver=False).options_model.__name__]
    properties = definition["properties"]
    assert isinstance(properties, dict)
    assert definition["additionalProperties"] is False
    undescribed = {option for option in own_options(type_name) if not properties[option].get("description")}
    assert undescribed <= UNDESCRIBED.get(type_name, set()), f"{type_name}: no description for {undescribed}"


SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("## `server`", ServerOptions),
    ("## `scheduler`", SchedulerOptions),
    ("## `defaults` and options of every check", CommonOptions),
    ("## `peers`", PeersOptions),
]


@pytest.mark.parametrize(("heading", "model"), SECTIONS, ids=[h.split("`")[1] for h, _ in SECTIONS])
def test_every_option_of_every_section_is_documented(heading: str, model: type[BaseModel]) -> None:
    documented = section(DOCS / "configuration.md", heading)
    missing = [option for option in model.model_fields if not in_code(documented, option)]
    assert not missing, f"docs/configuration.md {heading} does not document {missing}"


def test_every_group_kind_is_documented() -> None:
    documented = section(DOCS / "configuration.md", "## `groups`")
    names = [*KINDS, *RESERVED_GROUPS]
    assert [group for group in names if not in_code(documented, group)] == []


def value_paths(values: dict[str, object], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from value_paths(value, f"{path}.")
        else:
            yield path


def prefixes(path: str) -> list[str]:
    """'a.b.c' -> ['a', 'a.b', 'a.b.c']."""
    parts = path.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def test_every_helm_value_is_documented() -> None:
    """Each value of helm/probed/values.yaml, or a map holding it (`resources`), is in the chart's table."""
    values = yaml.safe_load((ROOT / "helm" / "probed" / "values.yaml").read_text())
    documented = section(DOCS / "operations.md", "### The chart's values")
    missing = [path for path in value_paths(values) if not any(f"`{p}`" in documented for p in prefixes(path))]
    assert not missing, f"docs/operations.md does not document the chart's {missing}"


def test_readme_names_every_variable_the_example_config_reads() -> None:
    example = (ROOT / "config" / "probed.example.yaml").read_text()
    names = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", example)) - {"VAR", "NAME"}
    documented = text(DOCS / "configuration.md")
    assert names and not [variable for variable in names if not in_code(documented, variable)]


# -- metrics, routes, formats --------------------------------------------------------------------


def daemon() -> Daemon:
    from probed.daemon import Daemon

    return Daemon(parse_config("checks:\n  disk: {type: disk, path: /}\n", "t.yaml"))


def metric_families() -> set[str]:
    """Every family /metrics can write, as Prometheus' text format names it:
    the daemon's, every check's, and the gauges each type declares."""
    from probed.metrics import CHECK_FAMILIES, daemon_families

    families = [*CHECK_FAMILIES, *(family for family, _ in daemon_families(daemon()))]
    names = {f"{family.name}_total" if family.type == "counter" else family.name for family in families}
    return names | {gauge.name for type_name in TYPES for gauge in load_type(type_name, need_driver=False).gauges}


def test_every_metric_family_is_documented() -> None:
    families = metric_families()
    documented_text = text(DOCS / "metrics.md")
    missing = sorted(family for family in families if not re.search(rf"`{family}[`{{]", documented_text))
    assert not missing, f"docs/metrics.md does not document {missing}"
    listed = set(re.findall(r"`(probed_\w+)", section(DOCS / "metrics.md", "## Families")))
    assert listed - families == set(), "docs/metrics.md lists families /metrics does not write"


def test_every_route_is_documented() -> None:
    from probed.web import create_app

    app = create_app(daemon())
    routes = {
        route.method + " " + re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")  # HEAD beside each GET; the catch-all
    }
    documented = text(DOCS / "endpoints.md")
    assert sorted(route for route in routes if f"`{route}`" not in documented) == []


def test_every_format_is_documented() -> None:
    from probed.report import FORMATS

    formats = section(DOCS / "endpoints.md", "## Formats")
    for form in FORMATS.values():
        assert f"`{form.name}`" in formats and f"`{form.content_type}`" in formats, form.name
    synopsis = text(DOCS / "cli.md").split("probed check    [NAME...] [--output ", 1)[1].split("]", 1)[0]
    assert set(synopsis.split("|")) == set(FORMATS)
