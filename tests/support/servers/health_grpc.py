"""A gRPC server with the standard health servicer, SERVING, in a process of its own:
python -m tests.support.servers.health_grpc PORT (GrpcServer here, and the benchmarks)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.support.net import free_port, port_open, wait_until
from tests.support.servers import ServerProcess


class GrpcServer(ServerProcess):
    """serve() below in a process of its own, so tests can stop, start and pause it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = Path(__file__).parents[3]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.servers.health_grpc", str(self.port)],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), f"gRPC server on port {self.port}")


async def serve(port: int) -> None:
    import grpc  # only in the server's own process: the tests that start it need not import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
