"""The aiohttp app: health endpoints and /metrics, answered from the store only.

No handler awaits a check. /health bodies are rendered at most once per change
of the store (cached by its version) and format; readiness answers are constants.
The format of /health and /health/checks/{name} comes from the table in
probed/report/, chosen by the Accept header.

/health/live, /health/ready and /health/startup without a query are the
probes' hot path, kept at the cost of a bare aiohttp handler
(docs/benchmarks.md): no middleware (aiohttp wraps every request of an app
that has one), headers prepared once, one lookup. Errors are JSON all the
same: every other handler is wrapped in `json_errors` on its own, and a
catch-all route answers unknown paths (404) and methods (405) in JSON.
"""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from multidict import CIMultiDict
from pydantic import SecretStr, ValidationError

from probed.answers import GROUP_ANSWERS, HEADERS, HEALTH_HEADERS, http_status
from probed.checks.push import Push
from probed.config import ServerOptions
from probed.daemon import Daemon
from probed.exclusions import MAX_BODY_BYTES as MAX_EXCLUSION_BYTES
from probed.exclusions import ExclusionRequest
from probed.groups import KINDS, Group, GroupStatus
from probed.lane import MAX_FIELD_SIZE, MAX_HEADERS
from probed.metrics import Exposition, exposition_format
from probed.peers import peer_answer
from probed.report import Format, Report, iso_time, published_status
from probed.report.health import exclusion_entry, history_document
from probed.report.negotiation import negotiate
from probed.report.text import render_group_verbose
from probed.secrets import redact
from probed.store import Store

log = structlog.get_logger("probed.web")

# Copied into each health response (aiohttp adds Content-Length and Date to the
# copy): a CIMultiDict copies faster than a dict converts, and setting
# content_type on a response would parse it again.
_HEALTH_HEADERS = CIMultiDict(HEALTH_HEADERS)


@dataclass(frozen=True)
class _Body:
    version: int
    rendered: float  # the cache's clock: time.monotonic()
    body: bytes


class HealthCache:
    """Health bodies per (check or whole report, format, details), rendered again only
    when the store changes (its version, or a new store after a reload), or for a
    format with `fresh_for`, when that many seconds have passed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._store: Store | None = None
        self._bodies: dict[tuple[str | None, str, bool], _Body] = {}

    def body(self, store: Store, form: Format, details: bool, name: str | None = None) -> bytes:
        """`name`: one check's report (the caller knows it exists), None: the whole report."""
        if store is not self._store:
            self._store, self._bodies = store, {}
        key = (name, form.name, details)
        cached = self._bodies.get(key)
        if cached is None or self._outdated(cached, form, store.version):
            report = Report.of_store(store, details) if name is None else Report.of_check(store.checks[name], details)
            cached = _Body(store.version, self._clock(), form.render(report))
            self._bodies[key] = cached
        return cached.body

    def _outdated(self, cached: _Body, form: Format, version: int) -> bool:
        if form.fresh_for is None:
            return cached.version != version
        return self._clock() - cached.rendered >= form.fresh_for


class Handlers:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon  # read per request: a config reload replaces its store
        self.exposition = Exposition(daemon)
        self.cache = HealthCache()

    @property
    def server(self) -> ServerOptions:
        return self.daemon.config.server  # per request: details and tokens change on reload

    async def group(self, request: web.Request) -> web.Response:
        """/health/{group}: any configured group."""
        return self.answer_group(request, request.match_info["group"])

    def answer_group(self, request: web.Request, name: str) -> web.Response:
        """A group's answer, as the store decides it. Without a query this is
        one lookup and a constant body; ?exclude= computes from the group's
        cached weights, never waiting on a check."""
        store = self.daemon.store
        group = store.groups.get(name)
        if group is None:
            raise web.HTTPNotFound(reason="no such group or path")
        # As Kubernetes' /readyz: a name that is no check excludes nothing (verbose says so).
        excluded = frozenset(request.query.getall("exclude", []))
        answer = store.group_status(name, excluded)
        if "verbose" not in request.query:
            return _group_response(answer)
        text = render_group_verbose(store, group, answer, excluded, self._details_allowed(request))
        return web.Response(text=text, status=http_status(answer.status), headers=HEADERS, content_type="text/plain")

    async def health(self, request: web.Request) -> web.Response:
        store, form = self.daemon.store, _format(request)
        body = self.cache.body(store, form, self._details_allowed(request))
        return _formatted_response(body, http_status(store.status), form)

    async def one_check(self, request: web.Request) -> web.Response:
        store, name = self.daemon.store, request.match_info["name"]
        state = store.checks.get(name)
        if state is None:
            raise web.HTTPNotFound(reason="no such check")
        form = _format(request)
        body = self.cache.body(store, form, self._details_allowed(request), name)
        return _formatted_response(body, http_status(published_status(state.effective)), form)

    async def history(self, request: web.Request) -> web.Response:
        state = self.daemon.store.checks.get(request.match_info["name"])
        if state is None:
            raise web.HTTPNotFound(reason="no such check")
        return web.json_response(history_document(state, self._details_allowed(request)), headers=HEADERS)

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
        return web.json_response(peer_answer(state, self.daemon.instance), headers=HEADERS)

    async def push(self, request: web.Request) -> web.Response:
        """A job's "I ran" (or "I failed"), for any check that receives pushes
        (probed/checks/push.py): written into the daemon's book, which the
        check reads on its next run."""
        name = request.match_info["name"]
        check = self.daemon.pushes.checks.get(name)
        if check is None:
            raise web.HTTPNotFound(reason="no heartbeat check of that name")
        token = check.options.token  # its own, or the server setting its type names
        if token is None or not _bearer_is(request, token):
            log.warning("heartbeat_refused", check=name, reason="invalid bearer token")
            raise web.HTTPUnauthorized(reason="invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        body = await _bounded_body(request, check.max_push_bytes)
        try:
            status, output = check.parse_push(body)
        except ValueError as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from None
        output = redact(output, {token.get_secret_value()})  # a job that prints its own token
        self.daemon.pushes.record(name, Push(time.monotonic(), status, output))
        log.info("heartbeat_received", check=name, status=status.value)
        return web.json_response({"check": name, "status": status.value}, headers=HEADERS)

    async def exclusions(self, request: web.Request) -> web.Response:
        """GET /health/{group}/exclusions: the group's live exclusions."""
        group = self._operator_group(request)
        items = sorted(self.daemon.exclusions.of(group.name).values(), key=lambda item: item.check)
        answer = {"group": group.name, "exclusions": [exclusion_entry(item) for item in items]}
        return web.json_response(answer, headers=HEADERS)

    async def exclude(self, request: web.Request) -> web.Response:
        """POST /health/{group}/exclusions: a check out of the group until it expires."""
        self._operator(request)
        body = await _bounded_body(request, MAX_EXCLUSION_BYTES)
        try:
            wanted = ExclusionRequest.model_validate_json(body)
        except ValidationError as exc:
            raise _invalid_body(exc) from None
        # The group as it is now, not before the body came: a reload while the body
        # was read may have removed the group or taken the check out of it. No await
        # from here to `add`, so no reload comes between the lookup and the exclusion.
        group = self._group(request)
        if wanted.check not in group.members:
            raise web.HTTPNotFound(reason="no such check in this group")
        item, replaced = self.daemon.exclusions.add(group.name, wanted)
        log.warning(
            "check_excluded",
            group=group.name,
            check=item.check,
            reason=item.reason,
            by=item.by,
            client=request.remote,
            until=iso_time(item.expires_at, "seconds"),
            replaced=replaced,
        )
        return web.json_response(exclusion_entry(item), status=200 if replaced else 201, headers=HEADERS)

    async def unexclude(self, request: web.Request) -> web.Response:
        """DELETE /health/{group}/exclusions/{check}: the check counts again at once."""
        group = self._operator_group(request)
        item = self.daemon.exclusions.remove(group.name, request.match_info["check"])
        if item is None:
            raise web.HTTPNotFound(reason="no exclusion of that check in this group")
        log.info("exclusion_removed", group=group.name, check=item.check, client=request.remote)
        return web.json_response(exclusion_entry(item), headers=HEADERS)

    def _operator_group(self, request: web.Request) -> Group:
        """The exclusions API's group, for a caller with the token."""
        self._operator(request)
        return self._group(request)

    def _operator(self, request: web.Request) -> None:
        """The exclusions API: off without server.exclusions_token, never anonymous."""
        token = self.server.exclusions_token
        if token is None:
            raise web.HTTPForbidden(reason="the exclusions API is off: server.exclusions_token is not set")
        if not _bearer_is(request, token):
            log.warning("exclusion_refused", path=request.path, client=request.remote, why="invalid bearer token")
            raise web.HTTPUnauthorized(reason="invalid bearer token", headers={"WWW-Authenticate": "Bearer"})

    def _group(self, request: web.Request) -> Group:
        """The path's group in the store in use (a reload replaces the store)."""
        group = self.daemon.store.groups.get(request.match_info["group"])
        if group is None:
            raise web.HTTPNotFound(reason="no such group")
        return group

    async def metrics(self, request: web.Request) -> web.Response:
        openmetrics, content_type = exposition_format(request.headers.get("Accept", ""))
        # server.details covers /metrics too: observed values are details, statuses are not.
        body = await self.exposition.render(openmetrics, observed=self._details_allowed(request))
        response = web.Response(body=body, headers=HEADERS)
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


def _bearer_is(request: web.Request, token: SecretStr) -> bool:
    sent = request.headers.get("Authorization", "").encode()
    return hmac.compare_digest(sent, f"Bearer {token.get_secret_value()}".encode())


async def _bounded_body(request: web.Request, limit: int) -> bytes:
    """The request's body, 413 past `limit` bytes."""
    if (request.content_length or 0) > limit:
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length or 0)
    body = await request.read()  # past the app's client_max_size, aiohttp answers 413 itself
    if len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(limit, len(body))
    return body


def _invalid_body(exc: ValidationError) -> web.HTTPException:
    """400 for a body that is no JSON, 422 for one that says the wrong thing; each problem named."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "json_invalid" for error in errors):
        return web.HTTPBadRequest(reason="the body must be a JSON object")
    problems = [
        f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg'].removeprefix('Value error, ')}"
        for error in errors
    ]
    return web.HTTPUnprocessableEntity(reason="; ".join(problems))


def probe_handler(handlers: Handlers, name: str) -> Handler:
    """The handler of a group kind's own route (live, ready, startup)."""
    with_query = json_errors(functools.partial(_fixed_group, handlers, name))
    daemon = handlers.daemon

    async def probe(request: web.Request) -> web.StreamResponse:
        if request.query_string:  # ?exclude, ?verbose: may compute, may refuse a token (raw: no parsing)
            return await with_query(request)
        body, code = GROUP_ANSWERS[daemon.store.group_status(name)]  # the kinds' groups always exist
        return web.Response(body=body, status=code, headers=_HEALTH_HEADERS)

    return probe


async def _fixed_group(handlers: Handlers, name: str, request: web.Request) -> web.Response:
    return handlers.answer_group(request, name)


def _group_response(answer: GroupStatus) -> web.Response:
    body, code = GROUP_ANSWERS[answer]
    return web.Response(body=body, status=code, headers=_HEALTH_HEADERS)


def _format(request: web.Request) -> Format:
    return negotiate(request.headers.get("Accept"), verbose="verbose" in request.query)


def _formatted_response(body: bytes, status: int, form: Format) -> web.Response:
    headers = {**HEADERS, **form.headers, "Content-Type": form.content_type, "Vary": "Accept, Authorization"}
    return web.Response(body=body, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_errors(handler: Handler) -> Handler:
    """Every error is a small JSON body with the right 4xx/5xx, never a traceback.
    Wraps one handler (not the app, as a middleware would wrap every request)."""

    async def answer_errors_in_json(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _error_response(exc)
        except Exception:
            log.exception("request_failed", path=request.path)
            return web.json_response({"error": "internal error"}, status=500, headers=HEADERS)

    return answer_errors_in_json


def _error_response(exc: web.HTTPException) -> web.Response:
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
    return web.json_response({"error": exc.reason}, status=exc.status, headers={**HEADERS, **headers})


async def unmatched(request: web.Request) -> web.Response:
    """The catch-all route: 405 with Allow when another route has this path, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        return _error_response(web.HTTPMethodNotAllowed(request.method, allowed))
    return _error_response(web.HTTPNotFound())


DAEMON = web.AppKey("daemon", Daemon)


def create_app(daemon: Daemon) -> web.Application:
    """The app; starting it starts the daemon's checks and cleaning it up stops them."""
    # keepalive_timeout runs from accept: it bounds the wait for a request's
    # headers as well as the idle time between kept-alive requests.
    idle = {"keepalive_timeout": daemon.config.server.idle_timeout}
    app = web.Application(handler_args={"max_field_size": MAX_FIELD_SIZE, "max_headers": MAX_HEADERS, **idle})
    app[DAEMON] = daemon
    handlers = Handlers(daemon)
    for name in KINDS:  # the probes' groups, each a route of its own, first
        app.router.add_get(f"/health/{name}", probe_handler(handlers, name))
    app.router.add_get("/health", json_errors(handlers.health))
    app.router.add_get("/health/checks/{name}", json_errors(handlers.one_check))
    app.router.add_get("/health/checks/{name}/history", json_errors(handlers.history))
    app.router.add_get("/health/{group}", json_errors(handlers.group))  # the configured groups
    app.router.add_get("/peers/checks/{name}", json_errors(handlers.peer_view))
    app.router.add_get("/metrics", json_errors(handlers.metrics))
    app.router.add_post("/heartbeat/{name}", json_errors(handlers.push))
    app.router.add_get("/health/{group}/exclusions", json_errors(handlers.exclusions))
    app.router.add_post("/health/{group}/exclusions", json_errors(handlers.exclude))
    app.router.add_delete("/health/{group}/exclusions/{check}", json_errors(handlers.unexclude))
    app.router.add_route("*", "/{path:.*}", unmatched)  # last: only what no other route matches
    app.cleanup_ctx.append(_run_checks)
    app.on_cleanup.append(lambda _: _close_exposition(handlers.exposition))
    return app


async def _close_exposition(exposition: Exposition) -> None:
    exposition.close()


async def _run_checks(app: web.Application) -> AsyncIterator[None]:
    daemon = app[DAEMON]
    await daemon.start()
    yield
    await daemon.stop()
