"""The status page: /health for browsers, one self-contained HTML document.

No script, no external asset: the style sheet is inline and allowed by its
hash in the Content-Security-Policy probed sends with the page, so the page
works offline and under `default-src 'none'`. It refreshes itself with a meta
refresh. Every value is escaped. Colour is never the only signal: each
status also has a word and a shape. What anonymous callers see follows
`server.details`, as for every other format.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape

from probed import __version__
from probed.fields import format_duration
from probed.model import Status
from probed.report import PENDING, Report, exclusion_words, iso_time, state_name
from probed.store import CheckState, Run

# Shapes as well as colours: a check mark, a triangle, a cross, a hollow circle.
SYMBOLS = {"pass": "\u2714", "warn": "\u25b2", "fail": "\u2716", PENDING: "\u25cb"}
MIN_REFRESH, MAX_REFRESH = 2, 30  # seconds; the page follows the fastest check within these
# Checks shown in full; the rest (passing ones last) are listed by name, each a link
# to its own page. Keeps the page readable and its rendering short (a few tens of
# milliseconds of the event loop) with thousands of checks, even when all fail.
MAX_CARDS = 100
DOT = " \u00b7 "

STYLE = """
:root{--pass:#1a7f37;--warn:#9a6700;--fail:#cf222e;--pending:#59636e;--ink:#1f2328;--muted:#59636e;
--line:#d1d9e0;--card:#fff;--page:#f6f8fa;color-scheme:light}
*{box-sizing:border-box}
body{margin:0;background:var(--page);color:var(--ink);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.pass{--c:var(--pass)}.warn{--c:var(--warn)}.fail{--c:var(--fail)}.pending{--c:var(--pending)}
header{background:var(--c);color:#fff;padding:.8rem 1rem}
header h1{margin:0;font-size:1.5rem;letter-spacing:.02em}
header p{margin:.2rem 0 0;opacity:.95}
.exclusions{margin:.4rem 0 0;padding-left:1.2rem;font-size:.9rem}
main,.more,footer{padding:.8rem;max-width:80rem;margin:0 auto}
.more h2{font-size:1.05rem;margin:0}
.more ul{list-style:none;padding:0;margin:.3rem 0;display:grid;gap:.1rem .8rem;
grid-template-columns:repeat(auto-fill,minmax(min(100%,16rem),1fr))}
.more a{color:var(--c);overflow-wrap:anywhere}
main{display:grid;gap:.8rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,24rem),1fr))}
.check{background:var(--card);border:1px solid var(--line);border-left:.4rem solid var(--c);
border-radius:.4rem;padding:.6rem .8rem;min-width:0}
.check h2{margin:0 0 .2rem;font-size:1.05rem;display:flex;gap:.5rem;align-items:baseline;flex-wrap:wrap}
.name{overflow-wrap:anywhere}
.badge{background:var(--c);color:#fff;border-radius:1rem;padding:0 .55rem;font-size:.85rem;white-space:nowrap}
.meta,.note{color:var(--muted);margin:.1rem 0;font-size:.9rem}
.reason{margin:.3rem 0 0;font-weight:600;color:var(--c)}
pre{white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-word;margin:.3rem 0;padding:.4rem .5rem;
background:var(--page);border-radius:.3rem;font:.85rem/1.4 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace}
dl{display:grid;grid-template-columns:auto 1fr;gap:0 .8rem;margin:.3rem 0;font-size:.9rem}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.strip{display:flex;flex-wrap:wrap;gap:2px;list-style:none;margin:0;padding:0}
.strip li{color:var(--c);font-size:.85rem;line-height:1.1;width:.95rem;text-align:center}
footer{color:var(--muted);font-size:.85rem}
.groups{list-style:none;display:flex;flex-wrap:wrap;gap:.3rem .6rem;margin:.4rem 0 0;padding:0}
.groups li{background:#fff;border-radius:1rem;padding:0 .6rem;font-size:.9rem}
.groups a{color:var(--c);font-weight:600;text-decoration:none}.groups .count{color:var(--muted)}
@media (max-width:30rem){body{font-size:14px}main,.more,footer{padding:.5rem}}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()

# Nothing may load but the inline style sheet (by its hash) and the data: icon
# that keeps the browser from asking for /favicon.ico.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def render(report: Report) -> bytes:
    overall = report.status.value
    counts = _counts(report.checks)
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    checks = sorted(report.checks, key=lambda state: -_severity(state))  # failures first, else config order
    refresh = _refresh_seconds(report.checks)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{refresh}">',
        f"<title>{SYMBOLS[overall]} {overall} \u00b7 probed</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{STYLE}</style>",
        "</head>",
        f'<body class="{overall}">',
        f'<header class="{overall}">',
        f'<h1 id="overall"><span aria-hidden="true">{SYMBOLS[overall]}</span> {overall.upper()}</h1>',
        f"<p>{len(report.checks)} checks: {escape(summary)} \u00b7 as of {_clock(report.rendered_at)} UTC"
        f" \u00b7 refreshes every {refresh} s</p>",
        f'<p class="note-overall" id="note"><strong>{escape(report.note)}</strong></p>' if report.note else "",
        _groups(report.groups),
        _exclusions(report),
        "</header>",
        "<main>",
        *(_check_card(state, report) for state in checks[:MAX_CARDS]),
        "</main>",
        _more(checks[MAX_CARDS:]),
        "<footer>",
        _details_note(report.details),
        f"<p>probed {escape(__version__)} \u00b7 "
        "JSON: <code>/health</code> (<code>Accept: application/json</code>), "
        "text: <code>/health?verbose</code>, recent runs: <code>/health/checks/NAME/history</code></p>",
        "</footer>",
        "</body>",
        "</html>",
    ]
    return ("\n".join(parts) + "\n").encode()


def _groups(groups: Iterable[tuple[str, Status, int]]) -> str:
    """Each group's verdict (ready, startup, live and the configured ones), as its endpoint answers it."""
    items = "".join(
        f'<li class="{status.value}"><a href="health/{escape(name)}">'
        f'<span aria-hidden="true">{SYMBOLS[status.value]}</span> {escape(name)}: {status.value}</a>'
        f' <span class="count">({members} checks)</span></li>'
        for name, status, members in groups
    )
    return f'<ul class="groups" id="groups" aria-label="groups">{items}</ul>' if items else ""


def _exclusions(report: Report) -> str:
    """The operators' exclusions: which check is out of which group, until when, and why."""
    items = "".join(
        f"<li>{escape(item.check)} excluded from {escape(item.group)} {escape(exclusion_words(item))}</li>"
        for item in report.excluded
    )
    return f'<ul class="exclusions" id="exclusions" aria-label="exclusions">{items}</ul>' if items else ""


def _check_card(state: CheckState, report: Report) -> str:
    status = state_name(state.effective)
    critical = "critical" if state.critical else "non-critical"
    meta = [escape(state.type), critical, _last_run(state, report.rendered_at)]
    if report.details and state.last is not None:
        meta.append(f"took {format_duration(state.last.duration, 0.001)}")
    lines = [
        f'<section class="check {status}" id="check-{escape(state.name)}">',
        f'<h2><span class="badge"><span aria-hidden="true">{SYMBOLS[status]}</span> {status}</span>'
        f' <span class="name">{escape(state.name)}</span></h2>',
        f'<p class="meta">{DOT.join(meta)}</p>',
    ]
    if report.details:
        lines += _details(state)
    lines.append(_strip(state.history, report.details))
    lines.append("</section>")
    return "\n".join(lines)


def _more(states: list[CheckState]) -> str:
    if not states:
        return ""
    items = "".join(
        f'<li class="{status}"><a href="health/checks/{escape(state.name)}">'
        f'<span aria-hidden="true">{SYMBOLS[status]}</span> {status} {escape(state.name)}</a></li>'
        for state in states
        for status in (state_name(state.effective),)
    )
    return (
        f'<section class="more" id="more"><h2>{len(states)} more checks</h2>'
        f'<p class="note">Listed by name only; each links to its own page.</p><ul>{items}</ul></section>'
    )


def _details(state: CheckState) -> list[str]:
    lines = []
    if state.reason is not None:
        lines.append(f'<p class="reason">reason: {escape(state.reason.value)}</p>')
    if state.output:
        lines.append(f'<pre class="output">{escape(state.output)}</pre>')
    if state.last is not None and state.last.observed:
        rows = "".join(
            f"<dt>{escape(key)}</dt><dd>{escape(_value(o.value))}{' ' + escape(o.unit) if o.unit else ''}</dd>"
            for key, o in state.last.observed.items()
        )
        lines.append(f'<dl class="observed">{rows}</dl>')
    return lines


def _strip(history: Iterable[Run], details: bool) -> str:
    """The recent runs, oldest first: one symbol each, its colour, shape and title saying how it ended."""
    marks = [_mark(run, details) for run in history]
    if not marks:
        return '<p class="note">no runs yet</p>'
    label = f'<p class="note">last {len(marks)} runs, oldest first</p>'
    return f'{label}<ol class="strip" aria-label="last {len(marks)} runs, oldest first">{"".join(marks)}</ol>'


def _mark(run: Run, details: bool) -> str:
    # The hot loop of the page (checks x runs): the title holds only a fixed status
    # and reason word and numbers, so it needs no escaping.
    status = run.status.value
    title = f"{status} {_clock(run.started_at)}"
    if details:
        title += f", {format_duration(run.duration, 0.001)}" + (f", {run.reason.value}" if run.reason else "")
    return f'<li class="{status}" title="{title}">{SYMBOLS[status]}</li>'


def _details_note(details: bool) -> str:
    if details:
        return ""
    return (
        '<p class="note" id="details-hidden">Reasons, outputs and observed values are shown to callers '
        "with the bearer token only (<code>server.details: token</code>).</p>"
    )


def _severity(state: CheckState) -> int:
    return state.effective.severity if state.effective is not None else Status.FAIL.severity


def _counts(states: Iterable[CheckState]) -> dict[str, int]:
    counts = dict.fromkeys(("fail", "warn", PENDING, "pass"), 0)
    for state in states:
        counts[state_name(state.effective)] += 1
    return counts


def _refresh_seconds(states: Iterable[CheckState]) -> int:
    fastest = min((state.interval for state in states), default=float(MAX_REFRESH))
    return int(min(max(fastest, MIN_REFRESH), MAX_REFRESH))


def _last_run(state: CheckState, now: float) -> str:
    if state.last is None:
        return "not run yet"
    ended = state.last.started_at + state.last.duration
    return f'last run <time datetime="{iso_time(ended, "seconds")}">{format_duration(now - ended, 1)} ago</time>'


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _clock(timestamp: float) -> str:
    """HH:MM:SS in UTC (arithmetic: several times faster than strftime, and called per run)."""
    second = int(timestamp) % 86400
    return f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
