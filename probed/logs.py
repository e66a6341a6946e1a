"""structlog setup: JSON for machines, readable lines for a person at a terminal.

Every line probed emits goes through here, in the chosen format: its own
events (structlog) and those of asyncio, aiohttp and the standard library
(logging, rendered by structlog's ProcessorFormatter). An error of probed's,
or any line of the standard library's, that repeats (same event, same
details) is written at most once per REPEAT_WINDOW; the next one after the
window carries `suppressed`, the count of lines dropped, so a failure that
loops (file descriptors exhausted) cannot flood the disk.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Literal, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from probed.secrets import redact_logged

LogFormat = Literal["auto", "json", "console"]

REPEAT_WINDOW = 10.0  # seconds
_MAX_KEYS = 1024  # distinct repeating lines tracked at once
_LIMITED_METHODS = frozenset({"error", "exception", "critical", "fatal"})
_NUMBERS = re.compile(r"0x[0-9a-fA-F]+|\d+(\.\d+)?")


class RepeatLimiter:
    """Admits the first of identical lines per window; counts the others."""

    def __init__(self, window: float = REPEAT_WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._seen: dict[Hashable, tuple[float, int]] = {}  # key -> (window start, suppressed)
        self._lock = threading.Lock()  # stdlib handlers may log from threads

    def admit(self, key: Hashable) -> int | None:
        """None: drop this line. Otherwise how many like it were dropped before it."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                self._seen[key] = (seen[0], seen[1] + 1)
                return None
            if len(self._seen) >= _MAX_KEYS:
                self._forget_older_than(now - self.window)
            self._seen[key] = (now, 0)
            return seen[1] if seen is not None else 0

    def _forget_older_than(self, moment: float) -> None:
        self._seen = {key: seen for key, seen in self._seen.items() if seen[0] >= moment}
        if len(self._seen) >= _MAX_KEYS:  # every key is recent: a flood of distinct lines
            self._seen.clear()

    def processor(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor for probed's own events: errors only. Lifecycle
        lines (a second reload) and verdict changes (bounded by the runs) must
        never be held back."""
        if method not in _LIMITED_METHODS:
            return event_dict
        key = (method, *((k, _short(v)) for k, v in sorted(event_dict.items()) if k != "timestamp"))
        suppressed = self.admit(key)
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event_dict["suppressed"] = suppressed
        return event_dict

    def filter(self, record: logging.LogRecord) -> bool:
        """logging filter for the standard library's records (asyncio, aiohttp)."""
        # asyncio formats objects into the message itself (addresses, timer
        # deadlines): the first line, with numbers blanked, names the repetition.
        error = record.exc_info[1] if record.exc_info else getattr(record, "error", None)
        first_line = _NUMBERS.sub("#", str(record.msg).partition("\n")[0])
        key = (record.name, record.levelno, first_line, type(error).__name__, str(error))
        suppressed = self.admit(key)
        if suppressed is None:
            return False
        record.suppressed = suppressed or None
        return True


def configure_logging(log_format: LogFormat = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    as_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer: Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    # JSON keeps a traceback inside its one line; the console renderer prints it itself.
    tracebacks: list[Processor] = [structlog.processors.format_exc_info] if as_json else []
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    limiter = RepeatLimiter()
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            timestamper,
            limiter.processor,
            *tracebacks,
            _masking_quoted(renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # asyncio, aiohttp and warnings log through the standard library: same
    # stream, same format, warnings and up only.
    handler = logging.StreamHandler(stream)
    handler.addFilter(limiter.filter)
    handler.setFormatter(
        _MaskingFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
                structlog.stdlib.ExtraAdder(allow=["suppressed", *_REJECTED_FIELDS]),
                _drop_none,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tracebacks, renderer],
        )
    )
    logging.basicConfig(handlers=[handler], level=max(logging.WARNING, numeric_level), force=True)
    server_log = logging.getLogger("aiohttp.server")
    if _rejected_request not in server_log.filters:
        server_log.addFilter(_rejected_request)
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception  # a thread's uncaught error: one line, not a bare traceback
    # "Exception ignored in ..." (a __del__ or a finalizer that raised, often
    # a driver's at exit): one line in the format too, not raw stderr.
    sys.unraisablehook = _log_unraisable


class _MaskingFormatter(structlog.stdlib.ProcessorFormatter):
    """Other code's lines (asyncio, aiohttp, a finalizer's repr, a thread's
    traceback) quote objects probed did not write: the config's secrets are
    masked in the whole line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_logged(super().format(record))


# probed's own fields that carry an exception or a traceback, whose text may quote anything.
_QUOTING = ("exc_info", "exception", "error")


def _masking_quoted(renderer: Processor) -> Processor:
    """The renderer, masking the config's secrets in probed's lines that quote an
    exception; the others are masked as they are made (a check's output), and
    are not searched: at thousands of secrets a search costs more than the line."""

    def render(logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
        quoting = any(key in event_dict for key in _QUOTING)
        line = renderer(logger, method, event_dict)
        return redact_logged(line) if quoting and isinstance(line, str) else line

    return render


def _log_unraisable(unraisable: Any) -> None:  # sys.UnraisableHookArgs, which typeshed cannot name at run time
    where = unraisable.err_msg or "Exception ignored in"
    if unraisable.object is not None:
        where = f"{where}: {unraisable.object!r}"
    error = unraisable.exc_value if unraisable.exc_value is not None else unraisable.exc_type()
    logging.getLogger("probed.unraisable").error(
        "%s", where, exc_info=(unraisable.exc_type, error, unraisable.exc_traceback)
    )


_REJECTED_FIELDS = ("client", "status", "error")
_LONGER_THAN = re.compile(r"^Got more than (\d+) bytes")


def _rejected_request(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (a header over max_field_size,
    too many headers, no HTTP at all) with a traceback, after answering it
    400 itself: the client's mistake, one line here, `request_rejected`, with
    `client`, `status` and `error`. The error never quotes the request: the
    parser's message does (100 bytes of an oversized header, a token with
    them). Any other error of aiohttp's (a bug: 500) keeps its traceback."""
    from aiohttp.http_exceptions import HttpProcessingError

    error = record.exc_info[1] if record.exc_info else None
    if not isinstance(error, HttpProcessingError) or not str(record.msg).startswith("Error handling request"):
        return True
    longer = _LONGER_THAN.match(error.message)
    record.error = (
        f"a request line or header longer than {longer[1]} bytes"
        if longer
        else error.message.partition(":")[0].strip() or type(error).__name__
    )
    record.client = record.args[0] if isinstance(record.args, tuple) and record.args else None
    record.status = 400  # as aiohttp answers every request it cannot parse
    record.msg, record.args, record.exc_info, record.exc_text = "request_rejected", (), None, None
    record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread else "?"
    error = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("probed.threads").error(
        "uncaught exception in thread %s", thread, exc_info=(args.exc_type, error, args.exc_traceback)
    )


def _drop_none(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    return {key: value for key, value in event_dict.items() if value is not None}


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:200]
