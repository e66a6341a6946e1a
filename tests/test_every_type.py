"""Guards every check type meets, run from one table (tests/support/every_type.py),
so a new type is held to them as soon as it is registered: no socket
outlives a run, and a server that closes at once is a fast failure."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

import pytest

from probed.checks import TYPES
from probed.model import Reason, Status
from tests.support.checks import run_check, sockets_after_failing_runs
from tests.support.every_type import AT_PORT, DATAGRAM, LOCAL
from tests.support.faults import answering_listener, silent_listener

GARBAGE = b"\x00\xff garbage\r\n" * 3

# Servers that misbehave, each a context manager giving its port.
FAULTS: dict[str, Callable[[], AbstractContextManager[int]]] = {
    "hangs": silent_listener,
    "closes at once": lambda: answering_listener(b""),
    "sends garbage": lambda: answering_listener(GARBAGE),
}


def test_every_type_has_an_entry() -> None:
    """A registered type missing from the table would escape every guard here."""
    assert set(TYPES) == set(AT_PORT) | set(DATAGRAM) | set(LOCAL), "add the type to tests/support/every_type.py"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("type_name", AT_PORT)
async def test_no_socket_outlives_a_run(type_name: str, fault: str) -> None:
    """20 runs that fail by timeout, close or garbage: not one connection left to the port."""
    with FAULTS[fault]() as port:
        options = {**AT_PORT[type_name](port), "timeout": "100ms", "interval": "1s"}
        assert await sockets_after_failing_runs(options, port) == 0


@pytest.mark.parametrize("type_name", AT_PORT)
async def test_a_server_that_closes_at_once_is_a_fast_failure(type_name: str) -> None:
    """Never `timeout`: the server said something (by closing), and the verdict says what."""
    with answering_listener(b"") as port:
        result = await run_check({**AT_PORT[type_name](port), "timeout": "5s", "interval": "10s"})
    assert result.status is Status.FAIL
    assert result.reason in (Reason.ERROR, Reason.UNEXPECTED), result.output
