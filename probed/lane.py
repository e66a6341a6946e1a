"""The probes' lane: a thread that answers a group's endpoint (/health/live,
/health/ready, /health/startup, /health/{group}) while the event loop is busy.

Every check, every reload and every /metrics render share probed's one event
loop; with thousands of checks, a burst of runs or a reload's rebuilding, a
probe that waits for its turn there waits tens of milliseconds. So this
thread waits on the listening sockets beside the loop, and whichever of the
two is free first takes a new connection (probed/connections.py). The thread
peeks at the request (MSG_PEEK: nothing is consumed). A plain GET or HEAD of
a group's path, with no query and no body, is answered here: the store
decides the answer (`Store.group_status`, a few lookups, safe from this
thread under the interpreter's lock) and the bytes come from the table
aiohttp's handler sends too (probed/answers.py), so the two send the same.
Anything else, including what cannot be parsed, is handed to the event loop
untouched, where aiohttp serves it, and its errors, as if it had accepted the
connection itself.

The thread needs the interpreter's lock to answer: while the loop computes,
it gets it within the switch interval (`SWITCH_INTERVAL`), not after the
loop's turn. A stuck loop does not stop it: liveness then fails by the
scheduler's heartbeat, as it says, instead of not answering.

The thread answers a connection's first request only (the kubelet opens one
per probe). Kept alive, the connection stays to see whether its client
closes it, as most do; a second request moves it to the loop, with any
request behind it: two hands serving a flood of requests on kept-alive
connections would only trade the lock back and forth. A connection waits
here for server.idle_timeout at most; the thread holds at most `limit` of
them (its share of the connection limit), closing the oldest at the cap, as
the loop's guard does for its own.
"""

from __future__ import annotations

import email.utils
import re
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import NamedTuple

import structlog
from aiohttp.http import SERVER_SOFTWARE

from probed.answers import GROUP_ANSWERS, HEALTH_HEADERS
from probed.groups import GroupStatus

log = structlog.get_logger("probed.lane")

Decide = Callable[[str], "GroupStatus | None"]  # a group's answer by its path's name; None: no such group
HandOff = Callable[[socket.socket], None]  # gives a connection to the event loop, its request unread

PEEK_BYTES = 8192  # a probe's request is a few hundred bytes; a longer head goes to aiohttp, which bounds it
ACCEPT_RETRY_DELAY = 0.1  # seconds, after an accept failed for want of descriptors
ACCEPT_FAILURE_LOG_PERIOD = 60.0  # seconds: one line a minute, not one per failed accept
SWITCH_INTERVAL = 0.001  # seconds a thread waits for the lock from one that computes (Python's default: 5 ms)

# A group's path: the names the config allows (letters, digits, '_', '.', '-').
_REQUEST_LINE = re.compile(rb"(GET|HEAD) /health/([A-Za-z0-9_.-]{1,63}) HTTP/1\.([01])")
_VISIBLE = rb"[\x21-\x7e\x80-\xff]"
_FIELD = re.compile(
    rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(" + _VISIBLE + rb"([ \t\x21-\x7e\x80-\xff]*" + _VISIBLE + rb")?)?[ \t]*"
)
# The limits aiohttp's parser is given (probed/web.py): past them it answers 400 itself.
MAX_FIELD_SIZE = 8190  # bytes of a header line
MAX_HEADERS = 128  # header lines
# Requests with these are aiohttp's: a body to read, a protocol switch, a 100-continue.
_NOT_OURS = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})


class Probe(NamedTuple):
    """A request the lane answers: which group, and how the connection goes on."""

    group: str
    head_only: bool  # HEAD
    minor: int  # HTTP/1.0 or HTTP/1.1
    keep_alive: bool


def parse_probe(head: bytes) -> Probe | None:
    """The probe in a request's head (up to and with its blank line), or None:
    not a plain GET or HEAD of a group's path, or anything aiohttp would refuse."""
    lines = head[:-4].split(b"\r\n")
    matched = _REQUEST_LINE.fullmatch(lines[0])
    if matched is None:
        return None
    method, group, minor = matched.group(1), matched.group(2).decode(), int(matched.group(3))
    if len(lines) - 1 > MAX_HEADERS:
        return None
    hosts, tokens = 0, set[bytes]()
    for line in lines[1:]:
        field = _FIELD.fullmatch(line) if len(line) <= MAX_FIELD_SIZE else None
        if field is None:  # no colon, a space before it, a folded line, a control byte: aiohttp's 400
            return None
        name = field.group(1).lower()
        if name in _NOT_OURS:
            return None
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            tokens.update(token.strip().lower() for token in (field.group(2) or b"").split(b","))
    if hosts > 1 or (minor == 1 and hosts == 0):  # HTTP/1.1 needs one Host (aiohttp answers 400)
        return None
    keep_alive = b"close" not in tokens if minor == 1 else b"keep-alive" in tokens
    return Probe(group, method == b"HEAD", minor, keep_alive)


_HEADERS = b"".join(f"{name}: {value}\r\n".encode() for name, value in HEALTH_HEADERS.items())
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n".encode()


class _Date:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second, self._line = -1, b""

    def line(self) -> bytes:
        second = int(time.time())
        if second != self._second:  # the lane's one thread alone calls it
            self._line = f"Date: {email.utils.formatdate(second, usegmt=True)}\r\n".encode()
            self._second = second
        return self._line


_DATE = _Date()
_STATUS_LINES = {
    (minor, code): f"HTTP/1.{minor} {code} {HTTPStatus(code).phrase}\r\n".encode()
    for minor in (0, 1)
    for _, code in GROUP_ANSWERS.values()
}
# As aiohttp: the header only where the version's default does not hold.
_CONNECTION = {
    (1, True): b"",
    (1, False): b"Connection: close\r\n",
    (0, True): b"Connection: keep-alive\r\n",
    (0, False): b"",
}


def response(answer: GroupStatus, probe: Probe) -> bytes:
    """What aiohttp sends for the group's handler, header for header."""
    body, code = GROUP_ANSWERS[answer]
    status = _STATUS_LINES[probe.minor, code]
    length = b"Content-Length: %d\r\n" % len(body)
    connection = _CONNECTION[probe.minor, probe.keep_alive]
    return b"".join(
        (status, _HEADERS, length, _DATE.line(), _SERVER, connection, b"\r\n", b"" if probe.head_only else body)
    )


class ProbeLane:
    """The thread; `start` once the listeners listen, `stop` before they close
    (the loop's servers on the same sockets close them)."""

    def __init__(
        self,
        listeners: list[socket.socket],
        decide: Decide,
        hand_off: HandOff,
        idle_timeout: float,
        limit: int,
    ) -> None:
        self._listeners = listeners
        self._decide = decide
        self._hand_off = hand_off
        self._idle_timeout = idle_timeout
        self.limit = limit
        self._held: dict[socket.socket, float] = {}  # waiting for a request -> when they expire, oldest first
        self._answered: set[socket.socket] = set()  # of those, the ones whose first request was answered
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="probed-probes", daemon=True)
        self._accept_failure_logged = -ACCEPT_FAILURE_LOG_PERIOD
        self.answered = 0
        self.handed_off = 0

    def start(self) -> None:
        # The lock is handed over this often while the loop computes and this
        # thread waits for it; only a waiting thread makes it switch.
        sys.setswitchinterval(SWITCH_INTERVAL)
        for listener in self._listeners:
            listener.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ, self._accept)
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop taking connections and close those held here; the loop closes its own."""
        if self._stopping:
            return
        self._stopping = True
        self._wake_writer.send(b"x")
        self._thread.join(timeout)

    @property
    def held(self) -> int:
        return len(self._held)

    def _serve(self) -> None:
        try:
            while not self._stopping:
                for key, _ in self._selector.select(timeout=self._until_next_expiry()):
                    if key.data is not None:
                        key.data(key.fileobj)
                self._close_expired()
        except Exception:  # a probe must never find the port deaf without a word in the log
            log.exception("probe_lane_failed")
        finally:
            self._close_all()

    def _until_next_expiry(self) -> float | None:
        """Seconds until the oldest held connection expires; None: asleep until a client comes."""
        for expires in self._held.values():  # the first expires first: held in order
            return max(0.0, expires - time.monotonic())
        return None

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of descriptors: the listener stays readable
            self._accept_failed(exc)
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._read(sock)

    def _accept_failed(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._accept_failure_logged >= ACCEPT_FAILURE_LOG_PERIOD:
            self._accept_failure_logged = now
            log.warning("probe_lane_accept_failed", error=exc.strerror or str(exc))
        time.sleep(ACCEPT_RETRY_DELAY)  # not spinning on it: a descriptor may free meanwhile

    def _read(self, sock: socket.socket) -> None:
        """The first request may be here: answer it, give the connection to the loop, or wait for it."""
        try:
            peeked = sock.recv(PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._hold(sock)
            return
        except OSError:
            self._close(sock)
            return
        if not peeked:  # the client closed
            self._close(sock)
            return
        if sock in self._answered:  # a second request: the loop's, as all that follows
            self._give_away(sock)
            return
        end = peeked.find(b"\r\n\r\n")
        probe = parse_probe(peeked[: end + 4]) if end >= 0 else None
        answer = self._answer_of(probe)
        if probe is None or answer is None:  # half a request, or not a probe: aiohttp's
            self._give_away(sock)
            return
        if not self._answer(sock, end + 4, response(answer, probe)):
            return  # closed
        if probe.keep_alive:  # most clients close next: that is for this thread to see, not the loop
            self._forget(sock)  # its idle time starts again, as aiohttp's keep-alive does
            self._answered.add(sock)
            self._hold(sock)
        else:
            self._close(sock)

    def _answer_of(self, probe: Probe | None) -> GroupStatus | None:
        if probe is None:
            return None
        try:
            return self._decide(probe.group)
        except Exception:  # whatever the store does mid-change: the loop's handler answers instead
            return None

    def _answer(self, sock: socket.socket, head_length: int, answer: bytes) -> bool:
        """Take the request off the socket and send the answer; False: the connection is gone."""
        try:
            sock.recv(head_length)  # what was peeked, all there
            sent = sock.send(answer)
        except OSError:
            self._close(sock)
            return False
        self.answered += 1
        if sent < len(answer):  # a client that sends requests and reads no answers: no buffering for it
            self._close(sock)
            return False
        return True

    def _hold(self, sock: socket.socket) -> None:
        """Wait here for the connection's next bytes, for server.idle_timeout."""
        if sock in self._held:  # readable, and nothing to read: woken for nothing
            return
        self._selector.register(sock, selectors.EVENT_READ, self._read)
        self._held[sock] = time.monotonic() + self._idle_timeout  # newest last
        if len(self._held) > self.limit:
            self._close(next(iter(self._held)))

    def _give_away(self, sock: socket.socket) -> None:
        self._forget(sock)
        self.handed_off += 1
        try:
            self._hand_off(sock)
        except Exception:  # the loop is closing: nobody to serve it
            sock.close()

    def _close_expired(self) -> None:
        now = time.monotonic()
        while self._held:
            sock, expires = next(iter(self._held.items()))
            if expires > now:
                return
            self._close(sock)

    def _forget(self, sock: socket.socket) -> None:
        if self._held.pop(sock, None) is not None:
            self._selector.unregister(sock)
        self._answered.discard(sock)

    def _close(self, sock: socket.socket) -> None:
        self._forget(sock)
        sock.close()

    def _close_all(self) -> None:
        for sock in list(self._held):
            self._close(sock)
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
