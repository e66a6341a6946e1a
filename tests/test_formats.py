"""The table of formats: content negotiation for what clients really send, and each format over HTTP."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import lxml.html
import pytest
from pytest_aiohttp import AiohttpClient

from probed.checks import create_check
from probed.model import Observation, Reason, Result, Status
from probed.report import FORMATS, Report
from probed.report.negotiation import negotiate
from probed.report.page import MAX_CARDS
from probed.store import Store
from tests.support.checks import config_from
from tests.support.daemon import DISKS, daemon, failed, passed
from tests.support.probed import mixed_config, run_probed

CHROME = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,"
    "application/signed-exchange;v=b3;q=0.7"
)
FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/png,*/*;q=0.8"
SAFARI = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# (Accept header as clients send it, the format probed answers with)
NEGOTIATION = [
    (None, "json"),  # kubelet's httpGet probe sends no Accept; nor do HAProxy and most load balancers
    ("", "json"),
    ("*/*", "json"),  # curl, wget, Python's urllib, fetch() and XHR
    ("application/json", "json"),
    ("application/health+json", "json"),
    ("application/json, text/plain, */*", "json"),  # axios
    ("application/*", "json"),
    ("text/plain", "table"),
    ("text/html;q=0.5, text/plain;q=0.6", "table"),
    ("text/plain;q=0.9, text/html", "html"),
    ("text/html, */*;q=0.1", "html"),
    (CHROME, "html"),
    (FIREFOX, "html"),
    (SAFARI, "html"),
    ("TEXT/HTML", "html"),  # media types are case-insensitive
    ("text/html; charset=utf-8; q=1", "html"),
    ("text/html;q=7", "html"),  # q is clamped to 1
    ("text/*", "table"),  # equally good for text/plain and text/html: the table's order decides
    ("application/json;q=0.2, text/html;q=0.1", "json"),
    ("text/html;q=0, */*", "json"),  # q=0 means "not this one"
    ("text/html;q=0", "json"),  # nothing acceptable: the default, not a 406 (see negotiate)
    ("image/png", "json"),
    ("application/xml", "json"),  # JUnit is for `probed check` only
    ("garbage", "json"),
    (";;;,,,//", "json"),
    ("text/html;q=banana, text/plain", "table"),  # an unreadable q counts as 0
]


@pytest.mark.parametrize(("accept", "expected"), NEGOTIATION)
def test_negotiation_for_what_clients_send(accept: str | None, expected: str) -> None:
    assert negotiate(accept).name == expected


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", CHROME])
def test_verbose_means_plain_text_whatever_accept_says(accept: str | None) -> None:
    assert negotiate(accept, verbose=True).name == "table"


def test_every_format_is_one_entry_with_a_name_type_and_renderer() -> None:
    for name, form in FORMATS.items():
        assert form.name == name and form.content_type and form.media_types and callable(form.render)
    assert negotiate(None) is FORMATS["json"]


@pytest.mark.parametrize(
    ("accept", "query", "content_type"),
    [
        ("*/*", "", "application/health+json"),
        ("text/plain", "", "text/plain; charset=utf-8"),
        ("application/json", "?verbose", "text/plain; charset=utf-8"),
        ("application/json", "?verbose=1", "text/plain; charset=utf-8"),
        ("text/html", "", "text/html; charset=utf-8"),
    ],
)
async def test_http_answers_in_the_negotiated_format(
    aiohttp_client: AiohttpClient, accept: str, query: str, content_type: str
) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", failed())
    for path in ("/health", "/health/checks/root"):
        response = await client.get(path + query, headers={"Accept": accept})
        assert response.status == 503  # the status code does not depend on the format
        assert response.headers["Content-Type"] == content_type
        assert response.headers["Vary"] == "Accept, Authorization"
        assert response.headers["Cache-Control"] == "no-store"
        assert len(await response.read()) > 0
        head = await client.head(path + query, headers={"Accept": accept})
        assert head.status == 503 and head.headers["Content-Type"] == content_type and await head.read() == b""


async def test_plain_text_report(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    d.store.record("root", passed())
    d.store.record("scratch", failed())
    text = await (await client.get("/health?verbose")).text()
    lines = text.splitlines()
    assert lines[0].split() == ["CHECK", "TYPE", "STATUS", "TIME", "REASON", "OUTPUT"]
    assert lines[1].split() == ["root", "disk", "pass", "2ms", "-", "/:", "50%", "free"]
    assert lines[2].split()[:6] == ["scratch", "disk", "fail", "(non-critical)", "500ms", "unexpected"]
    assert lines[2].endswith("/: 1% free, below the fail level of 5%")
    assert lines[-1] == "overall: warn"
    one = await (await client.get("/health/checks/scratch", headers={"Accept": "text/plain"})).text()
    assert one.splitlines()[1].split()[0] == "scratch" and one.splitlines()[-1] == "overall: fail"


async def test_plain_text_respects_details(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("let-me-see\n")
    d = daemon(DISKS, server={"details": "token", "token_file": str(tmp_path / "token")})
    client = await aiohttp_client(d.app)
    d.store.record("root", failed())
    anonymous = await (await client.get("/health?verbose")).text()
    assert anonymous.splitlines()[0].split() == ["CHECK", "TYPE", "STATUS"]
    assert "unexpected" not in anonymous and "1% free" not in anonymous
    authorized = await client.get("/health?verbose", headers={"Authorization": "Bearer let-me-see"})
    assert "1% free" in await authorized.text()


HOSTILE_OUTPUTS = [
    "<script>alert(1)</script>",
    "\"'><img src=x onerror=alert(1)>",
    "</pre></section><h1>owned</h1>",
    "&lt;already escaped&gt; & ampersands",
    "a" * 5000,  # one long unbroken word
    "line one\nline two\ttabbed",
]


@pytest.mark.parametrize("hostile", HOSTILE_OUTPUTS, ids=range(len(HOSTILE_OUTPUTS)))
async def test_page_escapes_hostile_outputs(aiohttp_client: AiohttpClient, hostile: str) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    observed = {"<b>key</b>": Observation(hostile, "\"unit'")}
    d.store.record("root", Result(Status.FAIL, 1_700_000_000.0, 0.1, hostile, Reason.UNEXPECTED, observed))
    response = await client.get("/health", headers={"Accept": "text/html"})
    assert response.status == 503 and response.headers["Content-Type"] == "text/html; charset=utf-8"
    document = lxml.html.fromstring(await response.read())
    assert document.xpath("//script | //img | //h1[text()='owned'] | //*[@onerror]") == []
    [output] = document.get_element_by_id("check-root").find_class("output")
    assert output.text_content() == hostile  # shown exactly, as text
    [key] = document.xpath("//*[@id='check-root']//dl/dt")
    assert key.text_content() == "<b>key</b>"
    assert document.xpath("//*[@id='check-root']//dl/dd")[0].text_content() == f"{hostile} \"unit'"


async def test_page_is_self_contained_under_its_csp(aiohttp_client: AiohttpClient) -> None:
    d = daemon(DISKS)
    client = await aiohttp_client(d.app)
    response = await client.get("/health", headers={"Accept": "text/html"})
    policy = response.headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; ") and "unsafe" not in policy
    document = lxml.html.fromstring(await response.read())
    [style] = document.xpath("//style")
    digest = base64.b64encode(hashlib.sha256(style.text.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in policy  # the one inline style sheet, allowed by its hash
    assert document.xpath("//script | //*[@style] | //link[@rel='stylesheet'] | //iframe") == []
    assert [link.get("href") for link in document.xpath("//link")] == ["data:,"]  # no /favicon.ico request
    assert document.xpath("//meta[@name='viewport']")
    assert document.xpath("//meta[@http-equiv='refresh']/@content") == ["10"]  # the checks' interval
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    # Pending checks say so, in words and a shape, not only in colour.
    assert document.get_element_by_id("check-root").find_class("badge")[0].text_content() == "\u25cb pending"


async def test_page_respects_details(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("let-me-see\n")
    d = daemon(DISKS, server={"details": "token", "token_file": str(tmp_path / "token")})
    client = await aiohttp_client(d.app)
    d.store.record("root", failed())
    html = {"Accept": "text/html"}
    anonymous = await (await client.get("/health", headers=html)).text()
    assert "1% free" not in anonymous and "unexpected" not in anonymous and "500ms" not in anonymous
    assert 'id="details-hidden"' in anonymous and 'class="strip"' in anonymous
    authorized = await client.get("/health", headers={**html, "Authorization": "Bearer let-me-see"})
    text = await authorized.text()
    assert (
        "1% free" in text
        and "reason: unexpected" in text
        and "took 500ms" in text
        and 'id="details-hidden"' not in text
    )
    one = await client.get("/health/checks/root", headers=html)
    assert one.status == 503 and 'id="check-root"' in await one.text() and 'id="check-scratch"' not in await one.text()


def test_page_shows_the_first_hundred_checks_in_full_and_lists_the_rest() -> None:
    config = config_from({f"disk-{i:03}": {"type": "disk", "path": "/"} for i in range(130)})
    store = Store([create_check(name, opts) for name, opts in config.checks.items()])
    for i, name in enumerate(config.checks):
        failing = i >= 110  # the last 20 fail: they must be among the cards
        store.record(name, failed() if failing else passed())
    document = lxml.html.fromstring(FORMATS["html"].render(Report.of_store(store, details=True)))
    cards = [card.get("id") for card in document.find_class("check")]
    assert len(cards) == MAX_CARDS and cards[:20] == [f"check-disk-{i:03}" for i in range(110, 130)]
    listed = document.xpath("//*[@id='more']//li")
    assert len(listed) == 130 - MAX_CARDS
    assert [li.text_content() for li in listed[:2]] == ["\u2714 pass disk-080", "\u2714 pass disk-081"]
    assert listed[0].xpath("a/@href") == ["health/checks/disk-080"]  # relative: works behind a path prefix


def test_check_command_prints_the_page_too(tmp_path: Path) -> None:
    done = run_probed("check", "--config", mixed_config(tmp_path), "--output", "html")
    assert done.returncode == 0, done.stderr
    document = lxml.html.fromstring(done.stdout)
    assert document.get_element_by_id("overall").text_content().endswith("WARN")
    assert document.get_element_by_id("check-api").find_class("reason")[0].text_content() == "reason: refused"


def test_page_shows_every_group_with_its_verdict_in_words_and_shape() -> None:
    config = config_from(
        {
            "db": {"type": "disk", "path": "/"},
            "cache": {"type": "disk", "path": "/", "critical": False},
        },
        groups={"payments": ["db", "cache"]},
    )
    store = Store([create_check(name, opts) for name, opts in config.checks.items()], groups=config.groups)
    store.record("db", failed())
    store.record("cache", passed())
    document = lxml.html.fromstring(FORMATS["html"].render(Report.of_store(store, details=False)))
    groups = {li.xpath("a/@href")[0]: li.text_content() for li in document.xpath("//*[@id='groups']/li")}
    assert groups["health/ready"] == "\u2716 ready: fail (1 checks)"
    assert groups["health/live"] == "\u2714 live: pass (0 checks)"
    assert groups["health/startup"] == "\u2716 startup: fail (1 checks)"
    assert groups["health/payments"] == "\u2716 payments: fail (2 checks)"


def test_the_cli_offers_every_format_of_the_table_and_no_other() -> None:
    from probed import cli

    parser = cli.build_parser()
    for name in FORMATS:
        assert parser.parse_args(["check", "--output", name]).output == name
    with pytest.raises(SystemExit):
        parser.parse_args(["check", "--output", "xml"])
