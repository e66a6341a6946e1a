"""Plain text: the table for terminals and `?verbose`, and a group's answer one
line per check (Kubernetes' /readyz?verbose style)."""

from __future__ import annotations

from probed.fields import format_duration
from probed.groups import Group, GroupStatus
from probed.model import Status
from probed.report import PENDING, Report, exclusion_words, fleet_words, published_status
from probed.store import CheckState, Store


def render(report: Report) -> bytes:
    """A table for terminals and `?verbose`; reasons, outputs and times only with details."""
    header = ("CHECK", "TYPE", "STATUS", "TIME", "REASON", "OUTPUT") if report.details else ("CHECK", "TYPE", "STATUS")
    rows = [header, *(_text_row(state, report.details) for state in report.checks)]
    # The last column (output) is not padded: it can be long.
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]) for row in rows]
    lines.append(f"overall: {report.status.value}" + (f" ({report.note})" if report.note else ""))
    lines += [f"excluded: {item.check} from {item.group} {exclusion_words(item)}" for item in report.excluded]
    return ("\n".join(line.rstrip() for line in lines) + "\n").encode()


def _text_row(state: CheckState, details: bool) -> tuple[str, ...]:
    status = published_status(state.effective).value + ("" if state.critical else " (non-critical)")
    if not details:
        return (state.name, state.type, status)
    took = format_duration(state.last.duration, 0.001) if state.last else "-"
    reason = state.reason.value if state.reason else "-"
    return (state.name, state.type, status, took, reason, state.output)


def render_group_verbose(
    store: Store, group: Group, answer: GroupStatus, excluded: frozenset[str], details: bool
) -> str:
    """`[+]db ok`, `[-]cache failed: refused`, then `<group> check passed|passed (warn)|failed`;
    first, a reason that is none of the checks (the scheduler's progress)."""
    lines = [f"[-]{answer.note}"] if answer.note else []
    operators = store.exclusions.of(group.name)
    for name in group.members:
        state = store.checks[name]
        if name in operators:
            item = operators[name].shown(details)
            lines.append(f"[+]{name} excluded {exclusion_words(item)}: {_verbose_verdict(state, details)}")
            continue
        if name in excluded:
            lines.append(f"[+]{name} excluded: {_verbose_verdict(state, details)}")
            continue
        mark = "-" if group.weights[name] is Status.FAIL else "+"
        lines.append(f"[{mark}]{name} {_verbose_verdict(state, details)}")
    unmatched = sorted(excluded - store.checks.keys())
    if unmatched:  # a typo must not pass unnoticed, nor fail the probe (as Kubernetes does)
        lines.append(f"warn: some checks cannot be excluded: no such check {', '.join(map(repr, unmatched))}")
    lines.append(f"{group.name} check {_VERBOSE_OUTCOMES[answer.status]}")
    return "\n".join(lines) + "\n"


# The last line of ?verbose; a warning still passes (200), and says so.
_VERBOSE_OUTCOMES = {Status.PASS: "passed", Status.WARN: "passed (warn)", Status.FAIL: "failed"}


def _verbose_verdict(state: CheckState, details: bool) -> str:
    verdict = state.effective
    if verdict is None:
        text = PENDING
    elif verdict is Status.FAIL:
        text = f"failed: {state.reason.value if state.reason else 'error'}"
        if details and state.output:
            text += f": {state.output}"
    else:
        text = "ok" if verdict is Status.PASS else "warn"
        if details and verdict is Status.WARN and state.output:
            text += f": {state.output}"
    notes = [] if state.critical else ["non-critical"]
    if state.fleet is not None:
        notes.append(fleet_words(state))
    return text + (f" ({'; '.join(notes)})" if notes else "")
