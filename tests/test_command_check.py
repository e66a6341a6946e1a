"""The command check running the real Nagios plugins (Debian's monitoring-plugins)
against local targets, and scripts that misbehave: hang, spawn children, print
megabytes, exit 3, leave a process behind that holds their output open."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from probed.checks.command import CommandCheck, parse_perf_data, split_output
from probed.config import ConfigError
from probed.model import Observation, Reason, Status
from probed.runner import run_once
from tests.support.checks import check_from, config_from, run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port, wait_until
from tests.support.probed import serve_config, serving

PLUGINS = Path("/usr/lib/nagios/plugins")
PR_SET_CHILD_SUBREAPER = 36


def plugin(name: str) -> str:
    path = PLUGINS / name
    if not path.exists():
        pytest.skip(f"{path} missing: run scripts/install-test-deps.sh (Debian package monitoring-plugins-basic)")
    return str(path)


def command(*argv: str, **options: Any) -> dict[str, Any]:
    return {"type": "command", "command": list(argv), **options}


def sh(script: str, **options: Any) -> dict[str, Any]:
    return command("/bin/sh", "-c", script, **options)


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for whoever adopted it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_until_gone(pids: list[int], seconds: float = 10) -> None:
    """The kill happens in the event loop: wait without blocking it."""
    deadline = time.monotonic() + seconds
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running: {[pid for pid in pids if not gone(pid)]}")
        await asyncio.sleep(0.02)


async def wait_for_file(path: Path, lines: int = 1) -> list[str]:
    for _ in range(500):
        if path.exists() and len(text := path.read_text().split()) >= lines:
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never got {lines} lines")


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test started outside probed's reach; killed afterwards whatever happens."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- real Nagios plugins ----------------------------------------------------------------


async def test_check_tcp_passes_on_an_open_port_with_its_performance_data() -> None:
    with silent_listener() as port:
        result = await run_check(command(plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(port)))
    assert result.status is Status.PASS, result.output
    assert result.output.startswith("TCP OK") and "|" not in result.output
    assert result.observed["time"].unit == "s"
    assert result.observed["exit_code"] == Observation(0)
    assert next(iter(result.observed)) == "time"  # the plugin's first value is the primary one


async def test_check_tcp_on_a_refused_port_is_critical() -> None:
    result = await run_check(command(plugin("check_tcp"), "-H", "127.0.0.1", "-p", str(closed_port())))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "Connection refused" in result.output
    assert result.observed["exit_code"].value == 2


async def test_check_http_against_a_local_server(target: str) -> None:
    port = str(urlsplit(target).port)
    ok = await run_check(command(plugin("check_http"), "-H", "127.0.0.1", "-p", port, "-u", "/ok", "-s", "all good"))
    assert ok.status is Status.PASS, ok.output
    assert ok.observed["size"].unit == "bytes" and int(ok.observed["size"].value) > 0

    error = await run_check(command(plugin("check_http"), "-H", "127.0.0.1", "-p", port, "-u", "/error"))
    assert (error.status, error.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "500" in error.output


async def test_levels_judge_performance_data_the_plugin_itself_passed(target: str) -> None:
    port = str(urlsplit(target).port)
    argv = (plugin("check_http"), "-H", "127.0.0.1", "-p", port, "-u", "/ok")
    result = await run_check(command(*argv, levels={"size": {"fail_above": 10}}))
    assert (result.status, result.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert "size is" in result.output and "above the fail level" in result.output


async def test_check_disk_warning_is_a_warn_with_bytes_observed(tmp_path: Path) -> None:
    # Warn below 100% free: any real filesystem is below that.
    result = await run_check(command(plugin("check_disk"), "-w", "100%", "-c", "0%", "-p", str(tmp_path)))
    assert result.status is Status.WARN, result.output
    assert result.output.startswith("DISK WARNING")
    [(_, used)] = [(k, v) for k, v in result.observed.items() if k != "exit_code"]
    assert used.unit == "bytes" and isinstance(used.value, int) and used.value > 0


async def test_an_unknown_state_fails_with_reason_error() -> None:
    result = await run_check(command(plugin("check_dummy"), "3", "cannot tell"))
    assert (result.status, result.reason) == (Status.FAIL, Reason.ERROR)
    assert result.output == "UNKNOWN: cannot tell (exit code 3)"


# -- misbehaving programs ------------------------------------------------------------------


async def test_exit_codes_the_nagios_way() -> None:
    assert (await run_check(sh("echo fine"))).status is Status.PASS
    warned = await run_check(sh("echo 'LOAD WARNING - high'; exit 1"))
    assert (warned.status, warned.output) == (Status.WARN, "LOAD WARNING - high")
    other = await run_check(sh("echo weird; exit 42"))
    assert (other.status, other.reason, other.output) == (Status.FAIL, Reason.ERROR, "weird (exit code 42)")
    silent = await run_check(sh("exit 2"))
    assert (silent.status, silent.reason) == (Status.FAIL, Reason.UNEXPECTED)
    assert silent.output == "/bin/sh: exited 2 (critical)"


async def test_stderr_speaks_when_stdout_is_silent() -> None:
    result = await run_check(sh("echo 'config file missing' >&2; exit 3"))
    assert result.output == "config file missing (exit code 3)"


async def test_a_program_killed_by_a_signal() -> None:
    result = await run_check(sh("kill -SEGV $$$$"))  # $$ is a literal $ in probed's config
    assert (result.status, result.reason) == (Status.FAIL, Reason.ERROR)
    assert result.output == "/bin/sh: killed by SIGSEGV"


async def test_a_missing_program_or_directory_is_an_error(tmp_path: Path) -> None:
    missing = await run_check(command("/usr/lib/nagios/plugins/check_nothing"))
    assert (missing.status, missing.reason) == (Status.FAIL, Reason.ERROR)
    assert missing.output == "/usr/lib/nagios/plugins/check_nothing: cannot run: No such file or directory"
    no_dir = await run_check(command("/bin/pwd", cwd=str(tmp_path / "nowhere")))
    assert no_dir.output.startswith(f"/bin/pwd: cannot run in {tmp_path / 'nowhere'}")


async def test_cwd(tmp_path: Path) -> None:
    result = await run_check(command("/bin/pwd", cwd=str(tmp_path)))
    assert result.output == str(tmp_path)


async def test_the_environment_is_minimal_plus_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROBED_OWN_SECRET", "not-for-children")
    leaked = await run_check(command("/usr/bin/printenv", "PROBED_OWN_SECRET"))
    assert leaked.status is Status.WARN and leaked.output == "/usr/bin/printenv: exited 1 (warning)"  # unset
    shown = await run_check(sh('echo "$GREETING from $PWD_NAME in $LANG"', env={"GREETING": "hi", "PWD_NAME": "x"}))
    assert shown.output == "hi from x in C.UTF-8"


async def test_secret_environment_values_are_never_shown() -> None:
    script = 'echo "token $API_TOKEN password $DB_PASSWORD"; echo "$API_TOKEN $DB_PASSWORD" >&2; exit 2'
    options = sh(script, env={"API_TOKEN": "tok-1234-abcd"}, secret_env={"DB_PASSWORD": "pw-9876-zyxw"})
    result = await run_check(options)
    assert result.output == "token *** password ***"
    check = check_from(options)
    assert {"tok-1234-abcd", "pw-9876-zyxw"} <= check.secrets()


async def test_a_hanging_program_times_out_and_its_whole_group_dies(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # A child, a grandchild in the background, and the program itself, all sleeping.
    script = f"sleep 300 & echo $! >> {pids}; (sleep 300 & echo $! >> {pids}; wait) & echo $$$$ >> {pids}; wait"
    check = check_from(sh(script, timeout="1s", interval="5s"))
    result = await run_once(check)
    assert (result.status, result.reason) == (Status.FAIL, Reason.TIMEOUT)
    started = [int(pid) for pid in await wait_for_file(pids, 3)]
    await wait_until_gone(started)
    await check.close()


@pytest.fixture
def adopter() -> Iterator[None]:
    """This process adopts orphans, as probed does when it is PID 1 in a container."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) is not allowed here")
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


async def test_orphans_handed_to_probed_are_reaped(tmp_path: Path, adopter: None) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 300 & echo $! >> {pids}; (sleep 300 & echo $! >> {pids}; wait) & wait"
    check = check_from(sh(script, timeout="1s", interval="5s"))
    assert (await run_once(check)).reason is Reason.TIMEOUT
    started = [int(pid) for pid in await wait_for_file(pids, 2)]
    await check.close()  # the run in flight has ended: its orphans are reaped, not zombies
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]


async def test_a_program_that_ignores_sigterm_dies_all_the_same(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    check = check_from(sh(f"trap '' TERM INT HUP; echo $$$$ > {pid_file}; while :; do sleep 1; done", timeout="1s"))
    result = await run_once(check)
    assert result.reason is Reason.TIMEOUT
    await wait_until_gone([int((await wait_for_file(pid_file))[0])])
    await check.close()


async def test_children_left_by_a_finished_program_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = await run_check(sh(f"sleep 300 & echo $! > {pid_file}; echo 'OK - done'"))
    assert (result.status, result.output) == (Status.PASS, "OK - done")
    await wait_until_gone([int((await wait_for_file(pid_file))[0])])


async def test_megabytes_of_output_are_read_and_dropped() -> None:
    # 20 MB on stdout and on stderr, the first line 10 MB long, then the performance data.
    script = (
        "head -c 10000000 /dev/zero | tr '\\0' x; echo ' | size=1B'; head -c 10000000 /dev/zero >&2; echo 'tail line'"
    )
    check = check_from(sh(script, max_output_bytes="64KiB"))
    assert isinstance(check, CommandCheck)
    result = await run_once(check)
    assert result.status is Status.PASS, result.output[:100]
    assert len(result.output) <= 500 and set(result.output) == {"x"}
    assert "size" not in result.observed  # beyond the 64 KiB kept: not seen, not an error


async def test_one_run_in_flight_at_most(tmp_path: Path, leftovers: list[int]) -> None:
    """A process that leaves the program's group and holds its output open
    keeps the run from ending; later runs fail at once instead of piling up
    processes until the process table is full."""
    starts, escaped = tmp_path / "starts", tmp_path / "escaped"
    script = f"echo run >> {starts}; setsid sleep 300 & echo $! >> {escaped}; sleep 300"
    check = check_from(sh(script, timeout="500ms", interval="5s"))
    first = await run_once(check)
    assert first.reason is Reason.TIMEOUT
    leftovers.extend(int(pid) for pid in await wait_for_file(escaped))

    for _ in range(3):
        busy = await run_once(check)
        assert (busy.status, busy.reason) == (Status.FAIL, Reason.TIMEOUT)
        assert busy.output == "/bin/sh: the previous run has not ended yet"
    assert starts.read_text().count("run") == 1  # no new process was started

    os.kill(leftovers[0], signal.SIGKILL)  # the output closes: the first run ends
    for _ in range(500):
        again = await run_once(check)
        if again.output != busy.output:
            break
        await asyncio.sleep(0.01)
    assert again.reason is Reason.TIMEOUT and "timed out" in again.output
    leftovers.extend(int(pid) for pid in (await wait_for_file(escaped, 2))[1:])
    assert starts.read_text().count("run") == 2
    await check.close()


async def test_closing_the_check_kills_a_running_program(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    check = check_from(sh(f"echo $$$$ > {pid_file}; sleep 300", timeout="20s", interval="30s"))
    run = asyncio.ensure_future(run_once(check))
    pid = int((await wait_for_file(pid_file))[0])
    await check.close()
    await wait_until_gone([pid])
    result = await run
    assert (result.status, result.reason, result.output) == (Status.FAIL, Reason.ERROR, "/bin/sh: killed by SIGKILL")


# -- output parsing ------------------------------------------------------------------------


def test_performance_data_in_base_units() -> None:
    observed = parse_perf_data("time=12ms;100;200;0 'free space'=80%;20;10 /=2048KB;;;0;4096 hits=7c load=0.5 bad=U")
    assert observed == {
        "time": Observation(0.012, "s"),
        "free space": Observation(80.0, "%"),
        "/": Observation(2048 * 1024, "bytes"),
        "hits": Observation(7, "c"),
        "load": Observation(0.5, ""),
    }


def test_quoted_labels_and_long_output() -> None:
    text, perf = split_output("PING OK - rta 1ms | rta=1ms;5;10\nline two\nline three | 'it''s'=3 pl=0%\n")
    assert text == "PING OK - rta 1ms"
    assert parse_perf_data(perf) == {
        "rta": Observation(0.001, "s"),
        "it's": Observation(3, ""),
        "pl": Observation(0.0, "%"),
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"command": []}, "command"),
        ({"command": [""]}, "the program (the first item) must not be empty"),
        ({"command": "check_tcp -H db"}, "command"),
        ({"command": ["/bin/true"], "env": {"BAD-NAME": "x"}}, "'BAD-NAME' is not an environment variable name"),
        ({"command": ["/bin/true"], "shell": True}, "unknown key"),
    ],
)
def test_config_mistakes_are_reported(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from({"job": {"type": "command", **options}})
    assert problem in str(caught.value)


# $$: the variables are for sh, not for the config's substitution
PRINT_GRPC_ENV = "'echo verbosity=$${GRPC_VERBOSITY-unset} trace=$${GRPC_TRACE-unset}; exit 1'"


@pytest.mark.parametrize("user_value", [None, "ERROR"])
def test_a_program_sees_the_users_grpc_settings_not_probeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user_value: str | None
) -> None:
    """probed sets GRPC_VERBOSITY=NONE for gRPC's C core once a grpc check exists;
    a program run by a command check is given the user's value, through ${VAR},
    on the first load and after a reload alike, and never probed's own."""
    for name in ("GRPC_VERBOSITY", "GRPC_TRACE"):  # this process may have imported the grpc check
        monkeypatch.delenv(name, raising=False)
    if user_value is not None:
        monkeypatch.setenv("GRPC_VERBOSITY", user_value)
    config = serve_config(
        tmp_path,
        f"  rpc: {{type: grpc, target: '127.0.0.1:{closed_port()}', critical: false}}\n"
        # What the program's environment holds of gRPC's settings, on one line (the output shows
        # the first), and exit 1 (warn): a verdict that is not pass shows its output.
        f"  printenv: {{type: command, command: [sh, -c, {PRINT_GRPC_ENV}],"
        " env: {GRPC_VERBOSITY: '${GRPC_VERBOSITY:-unset}'}}\n"
        f"  bare: {{type: command, command: [sh, -c, {PRINT_GRPC_ENV}]}}\n",
        server="  watch_files: false\n",
    )

    def outputs(after: str | None = None) -> dict[str, str]:
        def ran(_: int, body: str) -> bool:
            checks = json.loads(body)["checks"]
            return all(checks[name][0].get("time", "") > (after or "") for name in ("printenv", "bare"))

        checks = json.loads(served.until("/health", ran))["checks"]
        return {name: checks[name][0]["output"] for name in ("printenv", "bare")} | {"time": checks["bare"][0]["time"]}

    with serving(config, until="ran") as served:
        first = outputs()
        with open(config, "a") as file:
            file.write("# changed: a reload that reads the file again\n")  # the same text is no reload
        served.signal(signal.SIGHUP)
        served.until("/metrics", lambda _, body: "probed_config_last_load_success 1.0" in body)
        wait_until(lambda: len(served.events("config_reloaded")) == 1, "the reload")
        reloaded = outputs(after=first["time"])
    for seen in (first, reloaded):
        assert seen["printenv"] == f"verbosity={user_value or 'unset'} trace=unset", seen
        assert seen["bare"] == "verbosity=unset trace=unset", seen  # probed's environment is not passed on
