"""s3: HeadBucket with boto3, optionally put, get and delete a small probe object.

boto3 is blocking and heavy: it is imported only when an s3 check is
configured (this module loads lazily), and its calls run in a small thread
pool so the event loop never waits on them.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from probed.checks.base import Check, CheckOptions
from probed.checks.options import TlsOptions
from probed.checks.threads import OneAtATime
from probed.model import CheckFailed, Observation, Observed, Outcome, Reason, Status
from probed.secrets import display_url

_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="probed-s3")
_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "403",
}
_MISSING_CODES = {"NoSuchBucket", "404", "NotFound"}


class S3Options(CheckOptions, TlsOptions):
    """The TLS options apply to the endpoint (AWS's or endpoint_url's)."""

    type: Literal["s3"]
    bucket: str = Field(description="the bucket to head")
    region: str | None = Field(None, description="region (default: the AWS chain's, e.g. AWS_REGION)")
    endpoint_url: str | None = Field(None, description="for MinIO, Ceph, localstack: http(s)://host:port")
    addressing_style: Literal["auto", "virtual", "path"] = Field("auto", description="path for most S3 clones")
    access_key_id: str | None = Field(None, description="default: the standard AWS credential chain")
    secret_access_key: SecretStr | None = None
    secret_access_key_file: Path | None = None
    session_token: SecretStr | None = None
    session_token_file: Path | None = None
    write_test: bool = Field(False, description="put, get and delete a small object under key_prefix")
    key_prefix: str = Field(".probed/", description="where the write test's object goes")

    @model_validator(mode="after")
    def _key_pair(self) -> S3Options:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key (or secret_access_key_file) go together")
        return self


class S3Check(Check[S3Options]):
    options_model = S3Options
    component_type = "datastore"
    requires = ("boto3", "botocore.config")

    def __init__(self, name: str, options: S3Options) -> None:
        super().__init__(name, options)
        where = display_url(options.endpoint_url) if options.endpoint_url else "aws"
        self.target = f"s3://{options.bucket} ({where})"
        self._thread = OneAtATime[Observed](_EXECUTOR, f"{self.target}: the previous run is still waiting on S3")

    def prepare(self) -> None:
        # Made once, before any run: a boto3 client takes about 100 ms of CPU,
        # in a thread that would hold the GIL the event loop needs.
        self._client = self._new_client()

    async def run(self) -> Outcome:
        deadline = time.monotonic() + self.options.timeout
        observed = await self._thread.call(self._probe, deadline)
        said = "head" + (", put, get, delete" if self.options.write_test else "")
        return Outcome(Status.PASS, f"{self.target}: {said} ok", observed)

    def describe_error(self, exc: Exception) -> CheckFailed:
        """botocore's exceptions -> a plain sentence and a reason."""
        import botocore.exceptions as boto_errors

        target = self.target
        if isinstance(exc, boto_errors.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING_CODES:
                return CheckFailed(f"{target}: bucket {self.options.bucket} not found", Reason.UNEXPECTED)
            if code in _AUTH_CODES:
                return CheckFailed(f"{target}: access denied ({code}): check the credentials", Reason.AUTH)
            return CheckFailed(f"{target}: S3 answered {status} {code} {error.get('Message', '')}".rstrip())
        if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
            return CheckFailed(f"{target}: no credentials found: {exc}", Reason.AUTH)
        if isinstance(exc, boto_errors.ConnectTimeoutError | boto_errors.ReadTimeoutError):
            return CheckFailed(f"{target}: timed out", Reason.TIMEOUT)
        if isinstance(exc, boto_errors.SSLError):
            return CheckFailed(f"{target}: TLS failed: {exc}", Reason.TLS)
        failure = super().describe_error(exc)
        if failure.reason is Reason.ERROR and isinstance(exc, boto_errors.EndpointConnectionError):
            return CheckFailed(f"{target}: cannot connect to the endpoint")
        return failure

    def _probe(self, deadline: float) -> Observed:
        client = self._client
        start = time.perf_counter()
        client.head_bucket(Bucket=self.options.bucket)
        observed: Observed = {"head_time": Observation(round(time.perf_counter() - start, 6), "s")}
        if self.options.write_test and time.monotonic() < deadline:
            self._write_read_delete(client, deadline)
        return observed

    def _write_read_delete(self, client: Any, deadline: float) -> None:
        bucket = self.options.bucket
        key = f"{self.options.key_prefix}{self.name}-{uuid.uuid4().hex}"
        body = uuid.uuid4().bytes
        client.put_object(Bucket=bucket, Key=key, Body=body)
        try:
            if time.monotonic() < deadline:  # past it, the runner has already given up on us
                read = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                if read != body:
                    raise CheckFailed(f"{self.target}: wrote {key} but read back something else", Reason.UNEXPECTED)
        finally:
            client.delete_object(Bucket=bucket, Key=key)

    def _new_client(self) -> Any:
        import botocore.config

        opts = self.options
        # Half the timeout each to connect and to read, one attempt: a run
        # that cannot finish within the check's timeout is not retried.
        config = botocore.config.Config(
            connect_timeout=opts.timeout / 2,
            read_timeout=opts.timeout / 2,
            retries={"total_max_attempts": 1},
            s3={"addressing_style": opts.addressing_style},
            user_agent_extra="probed",
            client_cert=_client_cert(opts),
        )
        verify: bool | str = str(opts.ca_file) if opts.ca_file else opts.tls_verify
        return create_client(
            endpoint_url=opts.endpoint_url,
            config=config,
            verify=verify,
            region_name=opts.region,
            aws_access_key_id=opts.access_key_id,
            aws_secret_access_key=opts.secret_access_key.get_secret_value() if opts.secret_access_key else None,
            aws_session_token=opts.session_token.get_secret_value() if opts.session_token else None,
        )


def _client_cert(opts: S3Options) -> str | tuple[str, str] | None:
    if opts.cert_file is None:
        return None
    return (str(opts.cert_file), str(opts.key_file)) if opts.key_file else str(opts.cert_file)


_SESSION_LOCK = threading.Lock()
_session: Any = None


def create_client(**options: Any) -> Any:
    """An S3 client from the one boto3 session every s3 check shares.

    A session per check cost about 15 MB each (its own copy of the loaded
    service models and endpoint rules) and hundreds of thousands of objects
    for the garbage collector to walk; shared, a client costs about 1 MB.
    Credentials, region and endpoint are the client's own. botocore
    sessions are not safe to use from several threads at once: one lock.
    """
    import boto3

    global _session
    with _SESSION_LOCK:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **options)
