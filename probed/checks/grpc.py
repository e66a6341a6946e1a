"""grpc: the standard health service, grpc.health.v1.Health/Check, for one service.

grpcio's asyncio API (grpc.aio) is the reference implementation and the
stubs of the health protocol come from grpcio-health-checking. SERVING
passes; NOT_SERVING, UNKNOWN and SERVICE_UNKNOWN fail with reason unexpected.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from probed.checks.base import Check, CheckOptions
from probed.checks.options import TlsOptions
from probed.environ import set_for_drivers
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status

if TYPE_CHECKING:
    import grpc

# gRPC's C core logs to file descriptor 2 in a format of its own, one line per
# failed TLS handshake and without a limit. A run's output already says what
# failed, so it writes nothing unless the user sets these; grpc reads them
# when it is first imported, which this module defers to check creation.
# The config's ${VAR} still reads the user's values (probed/environ.py).
set_for_drivers("GRPC_VERBOSITY", "NONE")
set_for_drivers("GRPC_TRACE", "")

_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


class GrpcOptions(CheckOptions, TlsOptions):
    """The TLS options apply with `tls: true` (a client certificate makes it mutual TLS)."""

    type: Literal["grpc"]
    target: str = Field(description="host:port of the gRPC server")
    service: str = Field("", description="the service to ask about; empty: the server as a whole")
    tls: bool = Field(False, description="connect with TLS")
    server_name: str | None = Field(None, description="TLS name to verify instead of the target's host")
    metadata: dict[str, str] = Field(
        default_factory=dict, description="request metadata, e.g. {authorization: Bearer ...}; values never shown"
    )

    @field_validator("target")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("target must be host:port")
        return value

    @model_validator(mode="after")
    def _verified(self) -> GrpcOptions:
        if self.tls and not self.tls_verify:
            raise ValueError("tls_verify: gRPC always verifies the server; give its CA as ca_file instead")
        return self

    @field_validator("metadata")
    @classmethod
    def _lowercase_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key != key.lower() or key.startswith("grpc-"):
                raise ValueError(f"metadata keys are lowercase and not grpc-*, got {key!r}")
        return value


class GrpcCheck(Check[GrpcOptions]):
    options_model = GrpcOptions
    component_type = "component"
    # The stub and grpc._utilities load on the first call otherwise: in the first timed run.
    requires = ("grpc", "grpc._utilities", "grpc_health.v1.health_pb2", "grpc_health.v1.health_pb2_grpc")
    extra = "grpc"

    def __init__(self, name: str, options: GrpcOptions) -> None:
        super().__init__(name, options)
        service = f" service {options.service!r}" if options.service else ""
        self.target = f"grpc{'s' if options.tls else ''}://{options.target}{service}"

    def secrets(self) -> set[str]:
        return super().secrets() | set(self.options.metadata.values())  # metadata carries tokens

    def prepare(self) -> None:
        import grpc

        opts = self.options
        # One connection per run, no retries: what a new client would see.
        # gRPC's C core gives a connection attempt at least 20 s and keeps
        # it after the channel closes: against a server that accepts and
        # never answers, every timed-out run left its socket for 20 s. Bound
        # the attempt by the run's timeout, so the socket ends with the run.
        attempt_ms = max(1, int(opts.timeout * 1000))
        self._channel_options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 0),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.min_reconnect_backoff_ms", attempt_ms),
            ("grpc.initial_reconnect_backoff_ms", attempt_ms),
        ]
        if opts.tls and opts.server_name:
            self._channel_options.append(("grpc.ssl_target_name_override", opts.server_name))
        # Read once; gRPC verifies with its own TLS stack, from PEM bytes.
        self._credentials = (
            grpc.ssl_channel_credentials(
                root_certificates=opts.ca_file.read_bytes() if opts.ca_file else None,
                private_key=opts.key_file.read_bytes() if opts.key_file else None,
                certificate_chain=opts.cert_file.read_bytes() if opts.cert_file else None,
            )
            if opts.tls
            else None
        )

    async def run(self) -> Outcome:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        opts = self.options
        async with self._channel() as channel:
            start = time.perf_counter()
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=opts.service),
                timeout=opts.timeout,
                metadata=tuple(opts.metadata.items()) or None,
            )
            observed: Observed = {"rpc_time": Observation(round(time.perf_counter() - start, 6), "s")}
        status = _STATUS_NAMES.get(response.status, str(response.status))
        observed["serving_status"] = Observation(status)
        if status != "SERVING":
            raise CheckFailed(f"{self.target}: {status}", Reason.UNEXPECTED, observed)
        return Outcome(Status.PASS, f"{self.target}: SERVING", observed)

    def _channel(self) -> grpc.aio.Channel:
        import grpc

        if self._credentials is None:
            return grpc.aio.insecure_channel(self.options.target, options=self._channel_options)
        return grpc.aio.secure_channel(self.options.target, self._credentials, options=self._channel_options)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """gRPC status codes -> a plain sentence and a reason."""
        import grpc

        if not isinstance(exc, grpc.aio.AioRpcError):
            return super().describe_error(exc)
        code, details = exc.code(), exc.details() or ""
        said = f"{self.target}: {code.name}"
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return CheckFailed(f"{self.target}: timed out", Reason.TIMEOUT)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return CheckFailed(f"{said}: {details}", Reason.AUTH)
        if code is grpc.StatusCode.NOT_FOUND:
            return CheckFailed(f"{self.target}: the server does not know this service", Reason.UNEXPECTED)
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return CheckFailed(f"{self.target}: the server has no grpc.health.v1 service", Reason.UNEXPECTED)
        if code is grpc.StatusCode.UNAVAILABLE:
            return _unavailable(self.target, details)
        return CheckFailed(f"{said}: {details}")


def _unavailable(target: str, details: str) -> CheckFailed:
    """UNAVAILABLE covers every way of not getting through; its details say which."""
    text = details.lower()
    if "connection refused" in text:
        return CheckFailed(f"{target}: connection refused", Reason.REFUSED)
    if "dns" in text or "name resolution" in text or "resolve" in text:
        return CheckFailed(f"{target}: name not resolved", Reason.DNS)
    if "ssl" in text or "tls" in text or "handshake" in text or "certificate" in text:
        return CheckFailed(f"{target}: TLS failed: {details}", Reason.TLS)
    return CheckFailed(f"{target}: unavailable: {details}")
