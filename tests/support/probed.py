"""probed run as a user runs it, in a process of its own: a command run to its
end (`run_probed`), or `probed serve` on a config until the test is done
(`serving`), the one way tests and benchmarks start it."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from probed.probe import default_url
from tests.support.checks import NO_LEVELS_YAML
from tests.support.net import closed_port, free_port, http_get, poll, wait_until

ROOT = Path(__file__).parents[2]
PROBED = (sys.executable, "-m", "probed")

# What `serving` waits for before it yields: nothing, an HTTP answer (any
# status: a live group may be configured to fail) from /health/live,
# /health/ready answering 200, or every check having run once.
Until = Literal["started", "listening", "ready", "ran"]


def run_probed(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`probed ARGS...` to its end: exit code, stdout and stderr."""
    return subprocess.run(
        [*PROBED, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def write_config(directory: Path, text: str, name: str = "probed.yaml") -> str:
    path = directory / name
    path.write_text(text)
    return str(path)


def serve_config(directory: Path, checks: str, server: str = "", interval: str = "1s", timeout: str = "500ms") -> str:
    """A config for `probed serve` on a free loopback port: `checks` are the
    YAML lines under `checks:`, `server` more lines under `server:`."""
    defaults = f"defaults:\n  interval: {interval}\n  timeout: {timeout}\n"
    return write_config(directory, f"server:\n  listen: 127.0.0.1:{free_port()}\n{server}{defaults}checks:\n{checks}")


def mixed_config(tmp_path: Path) -> str:
    """A passing critical check, a failing non-critical one."""
    return write_config(
        tmp_path,
        f"""
checks:
  tmp: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}
  api: {{type: http, url: 'http://127.0.0.1:{closed_port()}/health', critical: false}}
""",
    )


@dataclass
class Served:
    """A running `probed serve`: its base URL (where the config says it listens),
    its process, and what it wrote to stdout (the log) and stderr, kept in files
    next to the config so that a chatty log never blocks it on a full pipe."""

    base: str
    process: subprocess.Popen[bytes]
    out_file: Path
    err_file: Path

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def out(self) -> str:
        return self.out_file.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_file.read_text(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (those of one event: `name`)."""
        events = [json.loads(line) for line in self.out.splitlines() if line.startswith("{")]
        return [event for event in events if name is None or event["event"] == name]

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        """Status and body of a GET of this path (4xx and 5xx included), with a bearer token."""
        return http_get(self.base + path, headers=_bearer(token))

    def until(
        self, path: str, condition: Callable[[int, str], bool], token: str | None = None, seconds: float = 30
    ) -> str:
        """GET this path every 100 ms until condition(status, body); the body."""
        return poll(self.base + path, condition, seconds, headers=_bearer(token))[1]

    def answers(self) -> dict[str, str]:
        """What a caller can read, by path: /health, /metrics and each check's own answer."""
        paths = ["/health", "/metrics"]
        paths += [f"/health/checks/{name}" for name in json.loads(self.get("/health")[1])["checks"]]
        return {path: self.get(path)[1] for path in paths}

    def transitions(self, check: str) -> list[tuple[str, str]]:
        """(from, to) of each change of a check's status the log shows."""
        changes = [e for e in self.events() if e["event"] == "check_status_changed" and e["check"] == check]
        return [(change["from"], change["to"]) for change in changes]

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, as an orchestrator stops it, and its exit code (kill when it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"probed serve did not stop within {timeout} s of SIGTERM") from None


@contextmanager
def serving(
    config: Path | str | None,
    *args: str,
    until: Until = "listening",
    env: Mapping[str, str] | None = None,
    nofile: int | None = None,
    source: Path | None = None,
    command: Sequence[str] = PROBED,
    seconds: float = 30,
    clean_exit: bool = True,
    logs: Path | None = None,
) -> Iterator[Served]:
    """`probed serve --config CONFIG ARGS...` until the block ends, then SIGTERM.

    Yields once `until` holds (see Until); a process that ends before is an
    error with its stderr. On leaving, the exit code must be 0 unless
    clean_exit=False (a test that breaks it, a benchmark). `nofile` lowers
    RLIMIT_NOFILE; `source` runs another checkout (a before/after benchmark);
    `command` another way to start probed (the installed script). Without a
    config, probed reads $PROBED_CONFIG (as the image runs it) and `logs`
    says where stdout and stderr go (by default beside the config)."""
    environ = {**os.environ, **(env or {})}
    if source is not None:
        environ["PYTHONPATH"] = str(source)
    path = Path(config or environ["PROBED_CONFIG"])
    base = default_url(str(path), environ).removesuffix("/health/live")
    directory = logs or path.parent
    out_file, err_file = directory / f"{path.stem}.out", directory / f"{path.stem}.err"
    with out_file.open("wb") as out, err_file.open("wb") as err:
        process = subprocess.Popen(
            [*command, "serve", *(["--config", str(config)] if config else []), *args],
            stdout=out,
            stderr=err,
            env=environ,
            cwd=source or ROOT,
            preexec_fn=None if nofile is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        )
    served = Served(base, process, out_file, err_file)
    try:
        if until != "started":
            wait_until(lambda: _arrived(served, until), f"probed serve at {base} ({until})", seconds)
        yield served
    except BaseException:
        served.stop()
        raise
    code = served.stop()
    if clean_exit:
        assert code == 0, f"probed serve exited {code}: {served.err[-2000:]}"


def _bearer(token: str | None) -> dict[str, str] | None:
    return {"Authorization": f"Bearer {token}"} if token else None


def _arrived(served: Served, until: Until) -> bool:
    if served.process.poll() is not None:
        raise AssertionError(f"probed serve exited {served.process.returncode}: {served.err[-2000:]}")
    if until == "listening":
        return http_get(f"{served.base}/health/live", timeout=2)[0] != 0
    if until == "ready":
        return http_get(f"{served.base}/health/ready", timeout=2)[0] == 200
    status, body = http_get(f"{served.base}/health", timeout=2)
    return status in (200, 503) and every_check_ran(body)


def every_check_ran(body: str) -> bool:
    """Whether a /health answer (health+json) shows a result for every check."""
    return all("time" in entry[0] for entry in json.loads(body)["checks"].values())
