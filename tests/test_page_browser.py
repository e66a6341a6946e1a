"""The status page in a real browser: Debian's headless Chromium driven by Playwright,
against a real `probed serve` and real HTTP dependencies.

Screenshots go to test-artifacts/ (ignored by git) for people and CI to look at.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Response, sync_playwright

from tests.support.apps import app_in_thread, switch_app
from tests.support.checks import NO_LEVELS_YAML
from tests.support.net import closed_port, http_get, poll
from tests.support.probed import serve_config, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
WAIT_MS = 20_000  # how long a page may take to show a change (checks run every second)

URL_PASSWORD = "Brow5er-Pa55"
HEADER_TOKEN = "tok-PAGE-4242"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
LONG_WORD = "x" * 400


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("chromium is missing: scripts/install-test-deps.sh installs Debian's chromium (make test runs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@contextmanager
def page_probed(tmp_path: Path, checks: str, server: str = "") -> Iterator[str]:
    """`probed serve` with these checks (YAML lines under `checks:`), run every
    second; yields its base URL once every check has run."""
    with serving(serve_config(tmp_path, checks, server), until="ran") as served:
        yield served.base


@dataclass
class Watched:
    """A page and everything the browser said while showing it."""

    page: Page
    problems: list[str] = field(default_factory=list)  # console errors, page errors, failed or blocked loads
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    loads: int = 0  # documents loaded in the main frame: the first one, then each refresh


def open_page(browser: Browser, url: str, width: int = 1100, headers: dict[str, str] | None = None) -> Watched:
    context = browser.new_context(viewport={"width": width, "height": 480}, extra_http_headers=headers or {})
    page = context.new_page()
    watched = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        # A failing report is answered 503 by design, and Chromium logs that as an error.
        if message.type == "error" and not (message.location["url"] == url and "status of 503" in message.text):
            watched.problems.append(message.text)

    def on_response(response: Response) -> None:
        if response.status >= 400 and not (response.url == url and response.status == 503):
            watched.problems.append(f"{response.status}: {response.url}")

    page.on("console", on_console)
    page.on("response", on_response)
    page.on("pageerror", lambda error: watched.problems.append(str(error)))
    page.on("requestfailed", lambda request: watched.problems.append(f"failed: {request.url}"))
    page.on("request", lambda request: watched.requests.append(request.url))
    page.on("load", lambda _: setattr(watched, "loads", watched.loads + 1))

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(url, wait_until="load")
    return watched


def header_colour(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor"))


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_page_follows_a_flip_without_being_reloaded(browser: Browser, tmp_path: Path) -> None:
    app, state = switch_app()
    with app_in_thread(app) as dependency:
        checks = (
            f"  payments-api: {{type: http, url: '{dependency}/health'}}\n"
            f"  uploads: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}\n"
            f"  homepage: {{type: http, url: '{dependency}/', expect_body_contains: says hi, critical: false}}\n"
        )
        with page_probed(tmp_path, checks) as base:
            poll(f"{base}/health/checks/payments-api/history", lambda _, body: len(json.loads(body)["runs"]) >= 3)
            watched = open_page(browser, f"{base}/health")
            page = watched.page
            assert page.locator("#overall").inner_text().endswith("PASS")
            assert header_colour(page) == "rgb(26, 127, 55)"  # the style sheet applies: its hash let it in
            app_card = page.locator("#check-payments-api")
            assert "pass" in app_card.locator(".badge").inner_text()
            assert app_card.locator(".strip li").count() >= 3  # the strip of recent runs
            assert "\u2714" in app_card.locator(".strip").inner_text()  # pass marks have a shape too
            screenshot(page, "status-page-healthy.png")

            state["status"] = 500
            page.wait_for_selector("#check-payments-api.fail", timeout=WAIT_MS)  # the page refreshes itself
            assert watched.loads >= 2  # a meta refresh, not the test, loaded it again
            app_card = page.locator("#check-payments-api")
            assert app_card.locator(".reason").inner_text() == "reason: unexpected"
            assert "answered 500" in app_card.locator(".output").inner_text()
            page.wait_for_selector("#check-payments-api .strip li.fail", timeout=WAIT_MS)
            assert "\u2716" in app_card.locator(".strip").inner_text()
            assert page.locator("#overall").inner_text().endswith("FAIL")
            assert header_colour(page) == "rgb(207, 34, 46)"
            assert page.locator("main .check").first.get_attribute("id") == "check-payments-api"  # failures come first
            screenshot(page, "status-page-failing.png")
            page.set_viewport_size({"width": 390, "height": 480})
            screenshot(page, "status-page-phone.png")

            assert watched.problems == []  # no console error, no CSP violation, no failed load
            assert set(watched.requests) == {f"{base}/health"}  # nothing but the page itself: no asset, no icon
            response = page.request.get(f"{base}/health", headers={"Accept": "text/html"})
            assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_secrets_and_hostile_outputs_stay_text(browser: Browser, tmp_path: Path) -> None:
    app, state = switch_app()
    state["status"] = 500
    with app_in_thread(app) as dependency:
        host = dependency.removeprefix("http://")
        checks = (
            f"  refused: {{type: http, url: 'http://probe:{URL_PASSWORD}@127.0.0.1:{closed_port()}/health'}}\n"
            f"  error: {{type: http, url: 'http://probe:{URL_PASSWORD}@{host}/health',"
            f" headers: {{X-Api-Token: {HEADER_TOKEN}}}}}\n"
            f"  hostile: {{type: http, url: '{dependency}/', expect_body_contains: {json.dumps(HOSTILE)}}}\n"
            f"  long: {{type: http, url: '{dependency}/', expect_body_contains: {LONG_WORD}, critical: false}}\n"
        )
        with page_probed(tmp_path, checks) as base:
            status, body = http_get(f"{base}/health")
            assert status == 503
            assert "***" in body  # the failures really are reported, masked
            watched = open_page(browser, f"{base}/health", width=390)
            page = watched.page
            html, text = page.content(), page.locator("body").inner_text()
            for secret in (URL_PASSWORD, HEADER_TOKEN):
                assert secret not in html and secret not in text
            assert "connection refused" in page.locator("#check-refused .output").inner_text()
            assert repr(HOSTILE) in page.locator("#check-hostile .output").inner_text()  # shown as text
            assert page.locator("script").count() == 0 and page.locator("main img").count() == 0
            assert watched.dialogs == []
            assert LONG_WORD in page.locator("#check-long .output").inner_text()
            # A long unbroken word wraps: nothing is wider than a phone's screen.
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            assert watched.problems == []


def test_anonymous_callers_see_statuses_only(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("page-token\n")
    server = f"  details: token\n  token_file: {tmp_path / 'token'}\n"
    checks = f"  refused: {{type: http, url: 'http://127.0.0.1:{closed_port()}/health'}}\n"
    with page_probed(tmp_path, checks, server) as base:
        anonymous = open_page(browser, f"{base}/health")
        card = anonymous.page.locator("#check-refused")
        assert "fail" in card.locator(".badge").inner_text()
        assert card.locator(".reason").count() == 0 and card.locator(".output").count() == 0
        assert "refused" not in card.locator(".strip").inner_html()  # not even in a run's title
        assert anonymous.page.locator("#details-hidden").is_visible()
        holder = open_page(browser, f"{base}/health", headers={"Authorization": "Bearer page-token"})
        assert holder.page.locator("#check-refused .reason").inner_text() == "reason: refused"
        assert anonymous.problems == [] and holder.problems == []
