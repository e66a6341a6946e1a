"""probed serve | check | validate | schema | probe; exit 0 ok, 1 a critical check fails, 2 bad config or usage."""

from __future__ import annotations

import argparse
import errno
import os
import sys

from probed import __version__

# Start-up cost follows the command: each command imports what it uses inside
# its function (`probe` and `--version` import nothing beyond argparse; `check`
# imports neither the HTTP server nor unselected drivers). tests/test_imports.py
# guards this: add no application import up here. Even `typing` is for mypy only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
    from collections.abc import Awaitable, Iterator, Sequence
    from typing import Any, NoReturn

    from probed.config import Config
    from probed.daemon import Daemon
    from probed.model import Status
    from probed.store import CheckState, Store

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
SHUTDOWN_TIMEOUT = 1.0  # seconds open requests get after SIGTERM


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter without `import shutil` (which brings zlib, bz2 and lzma):
    argparse makes one for every add_argument, so every command paid for it."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)


def _columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal's, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _FormatNames:
    """`--output`'s choices: the names in probed.report's table, read only when
    argparse needs them (a given --output, help), so other commands import no
    report code. The metavar keeps add_argument from listing them."""

    def __iter__(self) -> Iterator[str]:
        from probed.report import FORMATS

        return iter(FORMATS)

    def __contains__(self, name: object) -> bool:
        from probed.report import FORMATS

        return name in FORMATS


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """One line, exit 2: usage errors are not worth a screenful."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> NoReturn:
        # argparse's own version action formats through its help formatter,
        # which imports shutil (and zlib, bz2, lzma): a tenth of the command's start-up.
        sys.stdout.write(f"probed {__version__}\n")
        parser.exit(EXIT_OK)


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", "-c", help="config file (default: $PROBED_CONFIG, else a disk check on /)")
    common.add_argument(
        "--log-format",
        type=str.lower,
        choices=["auto", "json", "console"],
        default="auto",
        help="auto: JSON unless the output is a terminal",
    )
    common.add_argument("--log-level", type=str.lower, choices=["debug", "info", "warning", "error"], default="info")

    parser = _Parser(prog="probed", description="Health-and-dependency probe daemon.")
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, prog="probed")
    commands.add_parser("serve", parents=[common], help="run the checks on schedule and serve the health endpoints")
    check = commands.add_parser("check", parents=[common], help="run the checks once and print the verdicts")
    check.add_argument("names", nargs="*", metavar="NAME", help="checks to run (default: all)")
    check.add_argument(
        "--output",
        "-o",
        choices=_FormatNames(),
        default="table",
        metavar="FORMAT",
        help="%(choices)s (default: %(default)s)",
    )
    commands.add_parser("validate", parents=[common], help="check the config file and exit")
    commands.add_parser("schema", help="print the JSON Schema of the config file")
    probe = commands.add_parser("probe", help="GET a URL: exit 0 on 2xx/3xx, else 1 (for HEALTHCHECK, no curl)")
    probe.add_argument(
        "url",
        nargs="?",
        help="default: /health/live on the config's server.listen (--config, $PROBED_CONFIG), "
        "else on $PROBED_LISTEN, else on 127.0.0.1:8080",
    )
    probe.add_argument("--config", "-c", help="config file whose server.listen the default URL follows")
    probe.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        from probed.config import schema_text

        sys.stdout.write(schema_text())
        return EXIT_OK
    if args.command == "probe":
        from probed.probe import probe_command

        return probe_command(args.url, args.timeout, args.config)
    from probed.config import ConfigError, config_path, load_config, saturation_warning

    if args.command != "validate":  # validate runs nothing that logs: it configures no logging
        from probed.logs import configure_logging

        # Only `serve` logs to stdout; the other commands keep stdout for their answer.
        stream = sys.stdout if args.command == "serve" else sys.stderr
        configure_logging(args.log_format, args.log_level, stream)
    try:
        config = load_config(config_path(args.config))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    if args.command == "validate":
        count = len(config.checks)
        print(f"{config.source}: ok, {count} {'check' if count == 1 else 'checks'}")
        warning = saturation_warning(config.checks.values(), config.scheduler.max_concurrency)
        if warning:  # a valid config whose schedule cannot be kept when targets hang
            print(f"{config.source}: warning: {warning}", file=sys.stderr)
        return EXIT_OK
    if args.command == "check":
        return check_command(config, args.names, args.output)
    return serve_command(config, config_path(args.config))


# -- probed check ---------------------------------------------------------------------


def check_command(config: Config, names: list[str], output: str) -> int:
    import gc
    import signal

    from probed.checks import CheckNotMade, create_check
    from probed.loop import run
    from probed.model import Status
    from probed.once import run_checks_once
    from probed.report import FORMATS, Report
    from probed.secrets import mask_in_logs

    unknown = [name for name in names if name not in config.checks]
    if unknown:
        known = ", ".join(config.checks)
        print(f"probed: unknown check {', '.join(unknown)} (configured: {known})", file=sys.stderr)
        return EXIT_USAGE
    selected = {name: opts for name, opts in config.checks.items() if not names or name in names}
    signal.signal(signal.SIGTERM, _terminated)  # until the event loop takes over, below
    try:
        checks = [create_check(name, opts) for name, opts in selected.items()]  # imports drivers: may take a while
        mask_in_logs(set().union(*(check.masked for check in checks)))  # in lines quoting a driver's objects
        # Modules, drivers' data and the prepared checks live until exit: out of
        # the collector's sight, a collection inside a timed run walks only that run's objects.
        gc.freeze()
        # The groups over the selected checks only: the report is about those.
        groups = {group: [name for name in members if name in selected] for group, members in config.groups.items()}
        store = run(_until_interrupted(run_checks_once(checks, groups)))
    except CheckNotMade as exc:  # a type's bug or a broken driver: one line, as for bad config
        print(f"probed: {exc.problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before the checks started
        print("probed: interrupted by SIGINT", file=sys.stderr)
        return 128 + signal.SIGINT.value
    except _Interrupted as stop:
        # One line and the shell's convention (128 + signal number), never a traceback.
        print(f"probed: interrupted by {stop.signal.name}", file=sys.stderr)
        return 128 + stop.signal.value
    body = FORMATS[output].render(Report.of_store(store, details=True))
    sys.stdout.buffer.write(body if body.endswith(b"\n") else body + b"\n")
    return EXIT_FAIL if store.status is Status.FAIL else EXIT_OK


class _Interrupted(Exception):
    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(signum.name)
        self.signal = signum


def _terminated(signum: int, frame: object) -> None:
    import signal

    raise _Interrupted(signal.Signals(signum))


async def _until_interrupted(work: Awaitable[Store]) -> Store:
    """Await `work`; SIGINT or SIGTERM cancels it (its checks are closed) and raises _Interrupted."""
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        received.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if received:
            raise _Interrupted(received[0]) from None
        raise


# -- probed serve ---------------------------------------------------------------------


class CannotListen(Exception):
    """The listening socket could not be made: the address is taken, the port
    privileged, the host not this machine's or not resolvable."""

    def __init__(self, listen: str, exc: OSError) -> None:
        # os.strerror: asyncio's own text repeats the address; a gaierror's errno is
        # no errno (negative), its strerror says it: "Name or service not known".
        reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or str(exc)
        if exc.errno == errno.EACCES:
            reason += " (a port below 1024 needs root or CAP_NET_BIND_SERVICE)"
        super().__init__(f"cannot listen on {listen}: {reason}")


def serve_command(config: Config, path: str | None) -> int:
    from probed.checks import CheckNotMade
    from probed.loop import run

    try:
        return run(serve(config, path))
    except CannotListen as exc:
        print(f"probed: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except CheckNotMade as exc:
        print(f"probed: {exc.problem}", file=sys.stderr)
        return EXIT_USAGE


async def serve(config: Config, path: str | None) -> int:
    import asyncio

    from aiohttp import web

    from probed.connections import GuardedSite
    from probed.daemon import Daemon, freeze_what_lives_forever
    from probed.web import create_app

    log = _logger()
    daemon = Daemon(config, path, on_transition=log_transition)
    freeze_what_lives_forever()  # the checks are made (their drivers imported), none runs yet
    app = create_app(daemon)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    host, port = config.server.host_port
    try:
        site = GuardedSite(runner, host, port, daemon.group_answer, config.server.idle_timeout)
        await site.start()
    except OSError as exc:  # only the socket's own errors: any other OSError is no listening problem
        await runner.cleanup()
        raise CannotListen(config.server.listen, exc) from None
    log.info(
        "probed_started",
        version=__version__,
        listen=config.server.listen,
        config=config.source,
        checks=len(daemon.checks),
    )
    await _until_signalled(daemon)
    delay = daemon.config.server.shutdown_delay
    if delay:  # readiness fails first, so that load balancers let go; a second signal still exits at once
        daemon.drain()
        await asyncio.sleep(delay)
    log.info("probed_stopping")
    await runner.cleanup()  # stops listening, then the cleanup context stops the checks
    log.info("probed_stopped")
    # Every check is stopped and closed. A blocking call may still be running
    # in a thread (statvfs on a dead NFS mount, boto3 or a lookup on a silent
    # server): Python's exit, and asyncio.run's, would wait for it, up to the
    # check's timeout or forever. Nothing is left to write: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_OK)


async def _until_signalled(daemon: Daemon) -> None:
    """Return on the first SIGTERM/SIGINT; a second one, then or later, exits at once.
    SIGHUP reloads the config file, keeping the last good config on mistakes;
    so does a change of the config file or a file it names (probed/watch.py)."""
    import asyncio
    import signal

    from probed.watch import FileWatch

    log = _logger()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_hangup() -> None:
        log.info("signal_received", signal="SIGHUP")
        task = loop.create_task(daemon.reload())
        reloads.add(task)  # keep a reference until it is done
        task.add_done_callback(reloads.discard)

    def on_signal(signum: int) -> None:
        if stopping.is_set():  # also while draining (server.shutdown_delay)
            log.warning("probed_exiting_at_once", signal=signal.Signals(signum).name)
            sys.stdout.flush()
            os._exit(EXIT_FAIL)
        log.info("signal_received", signal=signal.Signals(signum).name)
        stopping.set()

    def paths() -> list[str] | None:
        """As the daemon listed them when it read its config: walking thousands
        of checks' options every second, in the watch's thread, held the GIL the loop waits for."""
        return daemon.watched_paths() if daemon.config.server.watch_files else None

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)

    async def on_change(files: list[str]) -> None:
        log.info("config_files_changed", files=files)
        await daemon.reload()

    watch = FileWatch(paths, on_change, daemon.watched, loop)
    watch.start()
    try:
        await stopping.wait()
    finally:
        watch.stop()


def log_transition(state: CheckState, before: Status | None) -> None:
    from probed.model import Status
    from probed.report import state_name

    log = _logger()
    after = state.effective
    event = log.warning if after is Status.FAIL else log.info
    event(
        "check_status_changed",
        check=state.name,
        type=state.type,
        **{"from": state_name(before), "to": state_name(after)},
        reason=state.reason.value if state.reason else None,
        output=state.output,
    )


def _logger() -> Any:
    """probed's logger; structlog is imported by the commands that log, not by `probe`."""
    import structlog

    return structlog.get_logger("probed")
