"""grpc check against a real gRPC server with the standard health servicer,
flipped between SERVING and NOT_SERVING; refused, silent, TLS and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from probed.model import Reason, Status
from tests.support.certificates import Certificate
from tests.support.checks import run_check
from tests.support.faults import silent_listener
from tests.support.net import closed_port, free_port

TOKEN = "Bearer grpc-s3cr3t-token"


@dataclass
class HealthServer:
    port: int
    servicer: health.aio.HealthServicer

    async def set(self, service: str, status: int) -> None:
        await self.servicer.set(service, status)


class RequireToken(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no types
    """Refuses calls without the expected authorization metadata."""

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        if (("authorization", TOKEN)) in tuple(details.invocation_metadata or ()):
            return await continuation(details)

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

        return grpc.unary_unary_rpc_method_handler(deny)


async def start_server(
    credentials: grpc.ServerCredentials | None = None, interceptors: list[Any] | None = None
) -> tuple[grpc.aio.Server, HealthServer]:
    server = grpc.aio.server(interceptors=interceptors or [])
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = free_port()
    if credentials is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        server.add_secure_port(f"127.0.0.1:{port}", credentials)
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await servicer.set("orders", health_pb2.HealthCheckResponse.SERVING)
    return server, HealthServer(port, servicer)


@pytest.fixture
async def grpc_server() -> AsyncIterator[HealthServer]:
    server, handle = await start_server()
    yield handle
    await server.stop(None)


def check(port: int, **extra: object) -> dict[str, object]:
    return {"type": "grpc", "target": f"127.0.0.1:{port}", **extra}


async def test_serving_flips_to_not_serving_and_back(grpc_server: HealthServer) -> None:
    serving = await run_check(check(grpc_server.port, service="orders"))
    await grpc_server.set("orders", health_pb2.HealthCheckResponse.NOT_SERVING)
    not_serving = await run_check(check(grpc_server.port, service="orders"))
    await grpc_server.set("orders", health_pb2.HealthCheckResponse.SERVING)
    back = await run_check(check(grpc_server.port, service="orders"))
    assert serving.status is Status.PASS, serving.output
    assert serving.output == f"grpc://127.0.0.1:{grpc_server.port} service 'orders': SERVING"
    assert not_serving.status is Status.FAIL and not_serving.reason is Reason.UNEXPECTED
    assert not_serving.output.endswith(": NOT_SERVING")
    assert back.status is Status.PASS


async def test_whole_server_unknown_and_missing_service(grpc_server: HealthServer) -> None:
    whole = await run_check(check(grpc_server.port))
    await grpc_server.set("billing", health_pb2.HealthCheckResponse.UNKNOWN)
    unknown = await run_check(check(grpc_server.port, service="billing"))
    missing = await run_check(check(grpc_server.port, service="nope"))
    assert whole.status is Status.PASS, whole.output
    assert unknown.reason is Reason.UNEXPECTED and unknown.output.endswith(": UNKNOWN")
    assert missing.reason is Reason.UNEXPECTED and "does not know this service" in missing.output


async def test_refused_and_silent() -> None:
    refused = await run_check(check(closed_port()))
    with silent_listener() as port:
        silent = await run_check(check(port, timeout="500ms"))
    assert refused.reason is Reason.REFUSED, refused.output
    assert silent.reason is Reason.TIMEOUT, silent.output


async def test_metadata_token_is_sent_and_masked() -> None:
    server, handle = await start_server(interceptors=[RequireToken()])
    try:
        good = await run_check(check(handle.port, metadata={"authorization": TOKEN}))
        wrong = await run_check(check(handle.port, metadata={"authorization": "Bearer wrong-one"}))
    finally:
        await server.stop(None)
    assert good.status is Status.PASS, good.output
    assert wrong.status is Status.FAIL and wrong.reason is Reason.AUTH, wrong.output
    assert "wrong-one" not in wrong.output and TOKEN not in wrong.output


async def test_tls(tls_certificate: Certificate) -> None:
    credentials = grpc.ssl_server_credentials(
        [(tls_certificate.key_file.read_bytes(), tls_certificate.cert_file.read_bytes())]
    )
    server, handle = await start_server(credentials)
    try:
        trusted = await run_check(check(handle.port, tls=True, ca_file=str(tls_certificate.cert_file)))
        untrusted = await run_check(check(handle.port, tls=True, timeout="1s"))
        plaintext = await run_check(check(handle.port, timeout="1s"))
    finally:
        await server.stop(None)
    assert trusted.status is Status.PASS, trusted.output
    assert untrusted.status is Status.FAIL and untrusted.reason is Reason.TLS, untrusted.output
    assert plaintext.status is Status.FAIL, plaintext.output


def test_options_that_cannot_work_are_config_errors() -> None:
    from probed.config import ConfigError
    from tests.support.checks import config_from

    with pytest.raises(ConfigError) as error:
        config_from(
            {
                "a": {"type": "grpc", "target": "no-port"},
                "b": {"type": "grpc", "target": "h:1", "tls": True, "tls_verify": False},
                "c": {"type": "grpc", "target": "h:1", "metadata": {"Authorization": "x"}},
            }
        )
    problems = str(error.value)
    assert "checks.a.target: target must be host:port" in problems
    assert "checks.b.tls_verify: gRPC always verifies the server" in problems
    assert "metadata keys are lowercase" in problems
