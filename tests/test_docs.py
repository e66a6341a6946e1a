"""The README's copy-paste examples are the files the tests run, verbatim."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "path",
    [
        "config/haproxy/haproxy.cfg",
        "config/prometheus/prometheus.yml",
        "tests/charts/shop/values.yaml",
        "tests/charts/shop/templates/deployment.yaml",
    ],
)
def test_readme_shows_the_tested_file(path: str) -> None:
    assert (ROOT / path).read_text().rstrip() in README, f"README's copy of {path} is out of date"


def test_readme_quick_start_is_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick_start.strip().splitlines()]
    assert commands == ["make run", "make test"]
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")


def test_readme_documents_every_format() -> None:
    from probed.report import FORMATS

    formats = README.split("### Formats", 1)[1].split("###", 1)[0]
    for form in FORMATS.values():
        assert f"`{form.name}`" in formats and f"`{form.content_type}`" in formats, form.name
    synopsis = README.split("probed check    [NAME...] [--output ", 1)[1].split("]", 1)[0]
    assert set(synopsis.split("|")) == set(FORMATS)
