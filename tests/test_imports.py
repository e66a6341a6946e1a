"""Start-up cost follows the command: each test runs a command in a fresh process
and lists the modules it imported (sys.modules at exit), beyond what the
interpreter itself loads for `python -c pass` in the same environment.
Module lists, never timings: bench/run.py measures the time."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from probed.checks import TYPES, load_type
from tests.support.apps import app_in_thread, target_app
from tests.support.net import closed_port

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "config" / "probed.example.yaml"
EXAMPLE_ENV = {"PAYMENTS_TOKEN": "example", "MONITOR_PASSWORD": "example"}  # variables it needs

# Runs probed's entry point as the console script does, then writes sys.modules
# to the file named by the first argument, however the command exits.
_RUN = """\
import sys
out = sys.argv.pop(1)
try:
    from probed.cli import main
    sys.exit(main(sys.argv[1:]))
finally:
    with open(out, "w") as file:
        file.write("\\n".join(sorted(sys.modules)))
"""

SERVER = {"aiohttp.web", "probed.web", "probed.daemon", "probed.metrics", "probed.scheduler"}
# Every type's driver packages, as the types declare them (aiohttp's client is the
# http check's), and cryptography, which the http check imports for one case.
DRIVERS = {module.partition(".")[0] for name in TYPES for module in load_type(name, need_driver=False).requires} | {
    "cryptography"
}


def imported(tmp_path: Path, *args: str, env: dict[str, str] | None = None, exit_code: int = 0) -> set[str]:
    """The modules `probed ARGS` imported beyond the interpreter's own start-up;
    the exit code shows the command did its work (not an early usage error)."""
    out = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), *args],
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == exit_code, done.stderr
    return set(out.read_text().split()) - _startup_modules()


@functools.cache
def _startup_modules() -> frozenset[str]:
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return frozenset(done.stdout.split())


def loaded(modules: set[str], packages: set[str]) -> set[str]:
    """Which of these packages (itself or a submodule) were imported."""
    return {package for package in packages if package in modules or any(m.startswith(f"{package}.") for m in modules)}


def third_party(modules: set[str]) -> set[str]:
    """Top-level packages from outside the standard library and probed (and Cython's
    runtime, which compiled extensions such as libyaml's binding register)."""
    names = {name.partition(".")[0] for name in modules} - set(sys.stdlib_module_names) - {"probed"}
    return {name for name in names if not name.startswith(("_cython_", "cython_runtime"))}


def probed_modules(modules: set[str]) -> set[str]:
    return {name for name in modules if name.partition(".")[0] == "probed"}


def test_probe_imports_the_standard_library_and_its_own_module_only(tmp_path: Path) -> None:
    with app_in_thread(target_app()) as url:
        modules = imported(tmp_path, "probe", f"{url}/ok")
    assert third_party(modules) == set()
    assert probed_modules(modules) == {"probed", "probed.cli", "probed.probe"}


def test_probe_of_a_closed_port_imports_no_more(tmp_path: Path) -> None:
    modules = imported(tmp_path, "probe", f"http://127.0.0.1:{closed_port()}/health/live", exit_code=1)
    assert third_party(modules) == set()
    assert probed_modules(modules) == {"probed", "probed.cli", "probed.probe"}


def test_probe_following_a_config_adds_yaml_only(tmp_path: Path) -> None:
    config = tmp_path / "probed.yaml"
    config.write_text(f"server:\n  listen: 127.0.0.1:{closed_port()}\nchecks: {{}}\n")
    modules = imported(tmp_path, "probe", env={"PROBED_CONFIG": str(config)}, exit_code=1)
    assert "yaml" in modules  # it did read the config
    assert third_party(modules) <= {"yaml", "_yaml"}
    assert probed_modules(modules) == {"probed", "probed.cli", "probed.probe", "probed.config_env"}


def test_version_imports_nothing_but_argparse(tmp_path: Path) -> None:
    modules = imported(tmp_path, "--version")
    assert third_party(modules) == set()
    assert probed_modules(modules) == {"probed", "probed.cli"}
    assert not loaded(modules, {"asyncio", "json", "http", "urllib", "ssl", "typing"})


def test_the_example_config_has_every_type() -> None:
    """So that the tests below, validating it, cover every type."""
    example = yaml.safe_load(EXAMPLE.read_text())
    assert {check["type"] for check in example["checks"].values()} == set(TYPES)


def test_validate_imports_no_driver_and_not_the_server(tmp_path: Path) -> None:
    modules = imported(tmp_path, "validate", "--config", str(EXAMPLE), env=EXAMPLE_ENV)
    assert {f"probed.checks.{name}" for name in TYPES} <= modules  # every type's options were read
    assert not loaded(modules, SERVER | DRIVERS | {"structlog"})


def test_schema_imports_no_driver_nor_the_server_nor_the_logging(tmp_path: Path) -> None:
    modules = imported(tmp_path, "schema")
    assert {f"probed.checks.{name}" for name in TYPES} <= modules  # the command did run
    assert not loaded(modules, SERVER | DRIVERS | {"structlog"})


def test_check_imports_the_selected_checks_drivers_only_and_not_the_server(tmp_path: Path) -> None:
    modules = imported(tmp_path, "check", "root-disk", "--config", str(EXAMPLE), env=EXAMPLE_ENV)
    assert "probed.runner" in modules  # the check did run
    assert not loaded(modules, SERVER | DRIVERS)


def test_check_imports_the_driver_of_a_selected_check(tmp_path: Path) -> None:
    """The other side: the guard above looks for the names drivers have."""
    config = tmp_path / "probed.yaml"
    port = closed_port()
    config.write_text(f"checks:\n  api:\n    type: http\n    url: http://127.0.0.1:{port}/\n    timeout: 1s\n")
    modules = imported(tmp_path, "check", "--config", str(config), exit_code=1)
    assert loaded(modules, DRIVERS) == {"aiohttp"}
    assert not loaded(modules, SERVER)


def test_serve_imports_the_server(tmp_path: Path) -> None:
    """The other side of the guards above: they look for names that do get imported."""
    with socket.socket() as taken:  # serve stops at once when its port is taken
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "probed.yaml"
        config.write_text(f"server:\n  listen: 127.0.0.1:{port}\nchecks:\n  tmp:\n    type: disk\n    path: /\n")
        modules = imported(tmp_path, "serve", "--config", str(config), exit_code=1)
    assert loaded(modules, SERVER) == SERVER
    assert {"pydantic", "structlog", "yaml", "aiohttp"} <= third_party(modules)
    # What every pod pays for: no driver for disk checks, and no prometheus_client
    # (probed writes /metrics itself; the library is for code that asks for a registry).
    assert not loaded(modules, DRIVERS - {"aiohttp"} | {"prometheus_client", "probed.collector"})
