"""Real faults for tests: listeners that misbehave (accept and hang, close at
once, answer garbage), a UDP port that never answers, a DNS server that
answers one rcode, a TCP path a test can cut, a hung filesystem, a paused
process. A check must judge each of them quickly and leave no socket behind."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.net import free_port, wait_until


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts connections (the kernel completes the handshake)
    and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])


@contextmanager
def answering_listener(reply: bytes) -> Iterator[int]:
    """A port that accepts, sends `reply` at once and closes: b"" is a server
    that closes at once, anything else garbage to the protocol under test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.1)  # accept() looks at `stop` between waits
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if reply:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        listener.close()


@contextlib.contextmanager
def silent_udp_port() -> Iterator[int]:
    """A UDP port that takes every datagram and never answers (a DNS server that hangs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


class RcodeServer:
    """A UDP DNS server of a few lines that answers every query with one
    rcode (SERVFAIL, REFUSED...), built with dnspython's message API."""

    def __init__(self, rcode: str) -> None:
        self.rcode = rcode
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RcodeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        import dns.message
        import dns.rcode

        while True:
            try:
                data, peer = self._sock.recvfrom(4096)
            except OSError:
                return  # closed
            response = dns.message.make_response(dns.message.from_wire(data))
            response.set_rcode(dns.rcode.from_text(self.rcode))
            self._sock.sendto(response.to_wire(), peer)


class TcpProxy:
    """Forwards 127.0.0.1:port to a target port; cut() drops every connection
    and refuses new ones (a broken path from one replica), heal() restores it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            # shutdown() wakes the accept() blocked in the thread: a close alone
            # leaves the socket listening until that accept returns, and the
            # next connection would still reach the target.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def heal(self) -> None:
        self.start()


@contextmanager
def hung_filesystem(directory: Path) -> Iterator[Path]:
    """A FUSE filesystem mounted at `directory` whose daemon never answers:
    every stat below it blocks in the kernel, as on a dead NFS server.
    Leaving unmounts it and aborts the connection, which releases the
    blocked threads (ENOTCONN). Needs root and /dev/fuse."""
    import pytest

    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fuse = os.open("/dev/fuse", os.O_RDWR)
    except OSError as exc:
        pytest.skip(f"no FUSE here to fake a hung filesystem: /dev/fuse: {exc.strerror}")
    options = f"fd={fuse},rootmode=40000,user_id=0,group_id=0".encode()
    directory.mkdir(parents=True, exist_ok=True)
    if libc.mount(b"probed-hung", str(directory).encode(), b"fuse.probed-hung", 0, options) != 0:
        os.close(fuse)
        pytest.skip(f"cannot mount a FUSE filesystem here: {os.strerror(ctypes.get_errno())}")
    try:
        yield directory  # the INIT request is never answered: every call below waits
    finally:
        libc.umount2(str(directory).encode(), 2)  # MNT_DETACH
        os.close(fuse)  # aborts the connection: blocked calls fail with ENOTCONN


def pause_process(pid: int) -> None:
    """SIGSTOP, and wait until the kernel has stopped every thread: kill()
    returns before a process running on another core has stopped, and a
    server may still answer one more request in between."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")
    wait_until(lambda: all(_task_state(task) == "T" for task in tasks.iterdir()), f"process {pid} to stop", seconds=10)


def _task_state(task: Path) -> str:
    try:
        return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:  # a thread that ended meanwhile
        return "T"
