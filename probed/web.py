"""The aiohttp app: health endpoints and /metrics, answered from the store only.

No handler awaits a check. /health bodies are rendered at most once per change
of the store (cached by its version); readiness answers are constants.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from probed.daemon import Daemon
from probed.metrics import create_registry
from probed.model import Status
from probed.report import CONTENT_TYPE, render_check, render_group_verbose, render_health
from probed.store import LIVE, READY, STARTUP, Store

log = structlog.get_logger("probed.web")

HEADERS = {"Cache-Control": "no-store"}
_STATUS_BODIES = {status: json.dumps({"status": status.value}).encode() for status in Status}


def http_status(status: Status) -> int:
    return 503 if status is Status.FAIL else 200


class HealthCache:
    """/health bodies, rendered again only when the store (or its version) changes."""

    def __init__(self) -> None:
        self._bodies: dict[bool, tuple[Store, int, bytes]] = {}

    def body(self, store: Store, details: bool) -> bytes:
        cached = self._bodies.get(details)
        if cached is None or cached[0] is not store or cached[1] != store.version:
            cached = (store, store.version, render_health(store, details))
            self._bodies[details] = cached
        return cached[2]


class Handlers:
    def __init__(self, daemon: Daemon, registry: CollectorRegistry) -> None:
        self.daemon = daemon  # read per request: a config reload replaces its store
        self.registry = registry
        self.server = daemon.config.server  # server settings change only on restart
        # server.details covers /metrics too: observed values are details, statuses are not.
        self.public_registry = create_registry(daemon, observed=False) if self.server.details == "token" else registry
        self.cache = HealthCache()

    async def group(self, request: web.Request) -> web.Response:
        """/health/{group}: any configured group."""
        return self.answer_group(request, request.match_info["group"])

    def answer_group(self, request: web.Request, name: str) -> web.Response:
        """A group's answer. Without a query this is one lookup and a constant
        body; ?exclude= computes from the group's cached weights, never
        waiting on a check."""
        store = self.daemon.store
        group = store.groups.get(name)
        if group is None:
            raise web.HTTPNotFound(reason="no such group or path")
        alive = self.daemon.alive() if name == LIVE else True
        if not request.query:
            status = group.status if alive else Status.FAIL
            return _health_response(_STATUS_BODIES[status], http_status(status))
        # As Kubernetes' /readyz: a name that is no check excludes nothing (verbose says so).
        excluded = frozenset(request.query.getall("exclude", []))
        status = group.status_without(excluded) if excluded else group.status
        status = status if alive else Status.FAIL
        if "verbose" not in request.query:
            return _health_response(_STATUS_BODIES[status], http_status(status))
        text = render_group_verbose(store, group, status, excluded, self._details_allowed(request), alive)
        return web.Response(text=text, status=http_status(status), headers=HEADERS, content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        store = self.daemon.store
        body = self.cache.body(store, self._details_allowed(request))
        return _health_response(body, http_status(store.status))

    async def one_check(self, request: web.Request) -> web.Response:
        state = self.daemon.store.checks.get(request.match_info["name"])
        if state is None:
            raise web.HTTPNotFound(reason="no such check")
        details = self._details_allowed(request)
        status = state.effective or Status.FAIL
        return _health_response(render_check(state, details), http_status(status))

    async def peer_view(self, request: web.Request) -> web.Response:
        """What the other replicas ask while a shared check fails for them
        (probed/peers.py): this replica's last run of the check and when it began."""
        if self.server.details == "token" and not self._details_allowed(request):
            raise web.HTTPUnauthorized(
                reason="peers must send the bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        name = request.match_info["name"]
        state = self.daemon.store.checks.get(name)
        if state is None:
            raise web.HTTPNotFound(reason="no such check")
        last = state.last
        answer = {
            "check": name,
            "status": (state.effective or Status.FAIL).value,
            "last": last.status.value if last else None,
            "time": last.started_at if last else None,
            "instance": self.daemon.instance,
        }
        return web.json_response(answer, headers=HEADERS)

    async def metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        registry = self.registry if self._details_allowed(request) else self.public_registry
        response = web.Response(body=encoder(registry), headers=HEADERS)
        response.headers["Content-Type"] = content_type
        return response

    def _details_allowed(self, request: web.Request) -> bool:
        """Public details, or details for callers that bring the bearer token."""
        if self.server.details == "public":
            return True
        header = request.headers.get("Authorization")
        if header is None:
            return False
        expected = f"Bearer {self.server.token.get_secret_value() if self.server.token else ''}"
        if not hmac.compare_digest(header.encode(), expected.encode()):
            raise web.HTTPUnauthorized(reason="invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        return True


async def _fixed_group(handlers: Handlers, name: str, request: web.Request) -> web.Response:
    return handlers.answer_group(request, name)


def _health_response(body: bytes, status: int) -> web.Response:
    response = web.Response(body=body, status=status, headers=HEADERS)
    response.content_type = CONTENT_TYPE
    return response


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error is a small JSON body with the right 4xx/5xx, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
        return web.json_response({"error": exc.reason}, status=exc.status, headers={**HEADERS, **headers})
    except Exception:
        log.exception("request_failed", path=request.path)
        return web.json_response({"error": "internal error"}, status=500, headers=HEADERS)


DAEMON = web.AppKey("daemon", Daemon)


def create_app(daemon: Daemon, registry: CollectorRegistry) -> web.Application:
    """The app; starting it starts the daemon's checks and cleaning it up stops them."""
    app = web.Application(middlewares=[json_errors], handler_args={"max_field_size": 8190})
    app[DAEMON] = daemon
    handlers = Handlers(daemon, registry)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/health/checks/{name}", handlers.one_check)
    for name in (LIVE, READY, STARTUP):  # the probes' groups, each a route of its own
        app.router.add_get(f"/health/{name}", functools.partial(_fixed_group, handlers, name))
    app.router.add_get("/health/{group}", handlers.group)  # the configured groups
    app.router.add_get("/peers/checks/{name}", handlers.peer_view)
    app.router.add_get("/metrics", handlers.metrics)
    app.cleanup_ctx.append(_run_checks)
    return app


async def _run_checks(app: web.Application) -> AsyncIterator[None]:
    daemon = app[DAEMON]
    await daemon.start()
    yield
    await daemon.stop()
