"""Optional check types: a missing driver is a config error that says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("type_name", "driver", "extra"), [("mysql", "asyncmy", "mysql"), ("amqp", "aiormq", "amqp")])
def test_a_missing_driver_is_one_config_line_naming_the_extra(
    tmp_path: Path, type_name: str, driver: str, extra: str
) -> None:
    """`probed validate` where the extra is not installed: sys.modules[driver] = None
    makes Python (and importlib.util.find_spec) treat the driver as absent."""
    config = tmp_path / "probed.yaml"
    config.write_text(f"checks:\n  broker:\n    type: {type_name}\n")
    blocked = f"import sys; sys.modules[{driver!r}] = None; from probed.cli import main; sys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", blocked, "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"{config}:3: checks.broker.type: check type {type_name!r} needs {driver}: pip install 'probed[{extra}]'"
    ]
