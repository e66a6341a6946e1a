"""Third-party check types: a real package, installed with pip, found through
the `probed.checks` entry point group, run end to end by the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.probed import run_probed

PLUGIN = Path(__file__).parent / "plugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An environment in which the plugin package is installed (into a
    directory of its own on PYTHONPATH, so the test venv stays clean)."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("build") / "plugin"
    shutil.copytree(PLUGIN, source)  # building writes build/ and egg-info beside the sources
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=source,
    )
    yield {**os.environ, "PYTHONPATH": str(target)}


def test_plugin_type_runs_end_to_end(plugin_env: dict[str, str], tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for index in range(3):
        (spool / f"job-{index}").touch()
    config = tmp_path / "probed.yaml"
    config.write_text(
        f"checks:\n  spool:\n    type: dircount\n    path: {spool}\n    levels: {{entries: {{warn_above: 2}}}}\n"
    )
    result = run_probed("check", "--config", str(config), "--output", "json", env=plugin_env)
    assert result.returncode == 0, result.stderr
    [entry] = json.loads(result.stdout)["checks"]["spool"]
    assert entry["status"] == "warn"  # the shared levels mechanism judges a plugin's values too
    assert entry["observed"]["entries"]["value"] == 3
    assert "entries is 3, above the warn level of 2" in entry["output"]


def test_plugin_type_is_listed_and_described(plugin_env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    config.write_text("checks:\n  x:\n    type: nosuchtype\n")
    invalid = run_probed("validate", "--config", str(config), env=plugin_env)
    assert invalid.returncode == 2
    assert "unknown check type 'nosuchtype'" in invalid.stderr and "dircount" in invalid.stderr
    schema = json.loads(run_probed("schema", env=plugin_env).stdout)
    assert "DirCountOptions" in json.dumps(schema)


def test_without_the_plugin_the_type_is_unknown(tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    config.write_text("checks:\n  x:\n    type: dircount\n    path: /\n")
    result = run_probed("validate", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown check type 'dircount'" in result.stderr


def test_a_broken_plugin_is_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "broken_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[probed.checks]\nbroken = broken_plugin:Nope\n")
    (site / "broken_plugin.py").write_text("raise RuntimeError('plugin exploded at import')\n")
    config = tmp_path / "probed.yaml"
    config.write_text("checks:\n  x:\n    type: broken\n")
    result = run_probed("validate", "--config", str(config), env={"PYTHONPATH": str(site)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "check type 'broken' (broken_plugin:Nope) cannot be loaded: plugin exploded at import" in result.stderr


# Python with one installed package made invisible, as if its extra were not installed.
WITHOUT = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
from probed.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize(("type_name", "driver", "extra"), [("nats", "nats", "nats"), ("grpc", "grpc", "grpc")])
def test_a_type_whose_extra_is_missing_names_the_extra(tmp_path: Path, type_name: str, driver: str, extra: str) -> None:
    config = tmp_path / "probed.yaml"
    options = {"nats": "url: nats://localhost:4222", "grpc": "target: localhost:50051"}[type_name]
    config.write_text(f"checks:\n  x:\n    type: {type_name}\n    {options}\n")
    command = [sys.executable, "-c", WITHOUT, driver, "validate", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == (
        f"{config}:3: checks.x.type: check type '{type_name}' needs {driver}: pip install 'probed[{extra}]'\n"
    )
