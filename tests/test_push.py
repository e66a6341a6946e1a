"""Push is a capability, not a type name: a type that extends PushCheck and
joins the table of types is served by POST /heartbeat/{name}, its token
default filled in by the config loader, with nothing else changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import pytest
from pytest_aiohttp import AiohttpClient

from probed import checks
from probed.checks.push import PushCheck, PushOptions
from probed.model import CheckFailed, Outcome, Reason, Status
from probed.runner import run_once
from tests.support.daemon import daemon

SERVER_TOKEN = "server-push-token"
CHECKS = {
    "deploy": {"type": "exitcode"},
    "etl": {"type": "heartbeat", "ttl": "1h"},
    "root": {"type": "disk", "path": "/"},
}


class ExitCodeOptions(PushOptions):
    type: Literal["exitcode"]
    token_setting = "heartbeat_token"


class ExitCodeCheck(PushCheck[ExitCodeOptions]):
    """A job pushes its exit status as text: 0 passes, any other code fails."""

    options_model = ExitCodeOptions
    max_push_bytes = 8  # far below heartbeat's: the handler must ask the type

    @classmethod
    def parse_push(cls, body: bytes) -> tuple[Status, str]:
        text = body.decode(errors="replace").strip()
        if not text.isdigit():
            raise ValueError("the body must be an exit status, like 0 or 3")
        return (Status.PASS if text == "0" else Status.FAIL), f"exit status {text}"

    async def run(self) -> Outcome:
        push = self.last_push()
        if push is None:
            return Outcome(Status.PASS, f"{self.target}: no exit status yet")
        if push.status is Status.FAIL:
            raise CheckFailed(f"{self.target}: {push.output}", Reason.ERROR)
        return Outcome(push.status, f"{self.target}: {push.output}")


@pytest.fixture(autouse=True)
def exitcode_type(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The one line a built-in push type adds to the table of types."""
    monkeypatch.setitem(checks.TYPES, "exitcode", f"{__name__}:ExitCodeCheck")
    yield


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_new_push_type_takes_the_server_token_and_its_pushes(aiohttp_client: AiohttpClient) -> None:
    d = daemon(CHECKS, server={"heartbeat_token": SERVER_TOKEN})
    client = await aiohttp_client(d.app)
    assert set(d.daemon.pushes.checks) == {"deploy", "etl"}  # every push check, whatever its type
    deploy = d.daemon.pushes.checks["deploy"]
    assert isinstance(deploy, ExitCodeCheck) and deploy.options.token is not None
    assert deploy.options.token.get_secret_value() == SERVER_TOKEN  # filled in by the config loader
    assert (await run_once(deploy)).output == "/heartbeat/deploy: no exit status yet"
    answer = await client.post("/heartbeat/deploy", data=b"3\n", headers=bearer(SERVER_TOKEN))
    assert answer.status == 200 and await answer.json() == {"check": "deploy", "status": "fail"}
    result = await run_once(deploy)
    assert (result.status, result.reason, result.output) == (
        Status.FAIL,
        Reason.ERROR,
        "/heartbeat/deploy: exit status 3",
    )
    assert (await client.post("/heartbeat/deploy", data=b"0", headers=bearer(SERVER_TOKEN))).status == 200
    assert (await run_once(deploy)).status is Status.PASS


async def test_the_type_says_what_it_accepts(aiohttp_client: AiohttpClient) -> None:
    d = daemon(CHECKS, server={"heartbeat_token": SERVER_TOKEN})
    client = await aiohttp_client(d.app)
    too_large = await client.post("/heartbeat/deploy", data=b"123456789", headers=bearer(SERVER_TOKEN))
    assert too_large.status == 413  # its own 8 bytes, not heartbeat's 64 KiB
    assert (await client.post("/heartbeat/etl", data=b" " * 9, headers=bearer(SERVER_TOKEN))).status == 200
    garbage = await client.post("/heartbeat/deploy", data=b"oops", headers=bearer(SERVER_TOKEN))
    assert garbage.status == 400 and await garbage.json() == {"error": "the body must be an exit status, like 0 or 3"}
    wrong = await client.post("/heartbeat/deploy", data=b"0", headers=bearer("not-it"))
    assert wrong.status == 401
    not_push = await client.post("/heartbeat/root", data=b"0", headers=bearer(SERVER_TOKEN))
    assert not_push.status == 404  # a check that receives no pushes
