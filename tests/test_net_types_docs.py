"""The tcp, tls and file types are documented where users look: `probed
schema` (editors) and the README's configuration reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from probed.checks import load_type
from probed.checks.base import CommonOptions

README = (Path(__file__).parent.parent / "README.md").read_text()


def own_options(type_name: str) -> list[str]:
    """The options a type adds to those every check has."""
    model = load_type(type_name).options_model
    return [name for name in model.model_fields if name not in CommonOptions.model_fields and name != "type"]


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "probed", "schema"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["$defs"])


@pytest.mark.parametrize(
    ("type_name", "model"), [("tcp", "TcpOptions"), ("tls", "TlsCheckOptions"), ("file", "FileOptions")]
)
def test_schema_describes_every_option(schema: dict[str, dict[str, object]], type_name: str, model: str) -> None:
    definition = schema[model]
    properties = definition["properties"]
    assert isinstance(properties, dict)
    assert definition["additionalProperties"] is False
    for option in own_options(type_name):
        assert properties[option].get("description"), f"{model}.{option} has no description"


@pytest.mark.parametrize("type_name", ["tcp", "tls", "file"])
def test_readme_documents_every_option(type_name: str) -> None:
    section = README.split(f"### `type: {type_name}`", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    missing = [option for option in own_options(type_name) if f"`{option}`" not in section]
    assert not missing, f"README's type: {type_name} section lacks {missing}"
