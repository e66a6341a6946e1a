"""A check type installed the way pip installs one (a dist-info with a
`probed.checks` entry point beside its module), in a directory to put on
PYTHONPATH: third-party types, broken ones included, without a build."""

from __future__ import annotations

from pathlib import Path


def plugin_site(directory: Path, type_name: str, module: str, source: str, cls: str) -> Path:
    """A site directory holding `module` (its code: `source`), whose class `cls` is check type `type_name`."""
    site = directory / "site"
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[probed.checks]\n{type_name} = {module}:{cls}\n")
    (site / f"{module}.py").write_text(source)
    return site


def raising_type(directory: Path, raised: str) -> Path:
    """A site with check type `exploding` (options: `dsn`) whose constructor
    raises `raised`, an exception class name, with a message quoting the dsn
    (a bug that writes its secret)."""
    source = f"""
from typing import Literal
from probed.checks.base import Check, CheckOptions
from probed.model import Outcome, Status

class ExplodingOptions(CheckOptions):
    type: Literal["exploding"]
    dsn: str

class ExplodingCheck(Check[ExplodingOptions]):
    options_model = ExplodingOptions

    def __init__(self, name, options):
        super().__init__(name, options)
        raise {raised}(f"constructor exploded on {{options.dsn}}")

    async def run(self):
        return Outcome(Status.PASS, "never")
"""
    return plugin_site(directory, "exploding", "exploding_plugin", source, "ExplodingCheck")


def leaking_finalizer_type(directory: Path) -> Path:
    """A site with check type `leaky` (options: `dsn`, a secret in it): each
    run drops an object whose __del__ raises, whose repr and error quote the
    dsn, as a driver's connection object might. Python hands it to
    sys.unraisablehook, which probed logs."""
    source = """
from typing import Literal
from probed.checks.base import Check, CheckOptions
from probed.model import Outcome, Status

class Connection:
    def __init__(self, dsn):
        self.dsn = dsn

    def __repr__(self):
        return f"<Connection {self.dsn}>"

    def __del__(self):
        raise RuntimeError(f"closing {self.dsn} failed")

class LeakyOptions(CheckOptions):
    type: Literal["leaky"]
    dsn: str

class LeakyCheck(Check[LeakyOptions]):
    options_model = LeakyOptions

    async def run(self):
        Connection(self.options.dsn)  # collected at once: its __del__ raises
        return Outcome(Status.PASS, "connected")
"""
    return plugin_site(directory, "leaky", "leaky_plugin", source, "LeakyCheck")
