"""JUnit XML, for CI jobs running `probed check`."""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET

from probed.model import Status
from probed.report import Report, iso_time, published_status
from probed.store import CheckState


def render(report: Report) -> bytes:
    """One testcase per check, as Jenkins, GitLab and GitHub Actions read JUnit reports
    (the Ant format; tests/junit.xsd). A failed check is a <failure> with its reason
    and output, non-critical ones included (`probed check` still exits 0 for those);
    a warning passes with its output in <system-out>."""
    cases = [_testcase(state, report.details) for state in report.checks]
    failures = sum(1 for case in cases if case.find("failure") is not None)
    took = f"{sum(state.last.duration for state in report.checks if state.last):.6f}"
    counts = {"tests": str(len(cases)), "failures": str(failures), "errors": "0", "time": took}
    suites = ET.Element("testsuites", {"name": "probed", **counts})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": "probed",
            **counts,
            "skipped": "0",
            "timestamp": iso_time(report.rendered_at, "seconds", zone=""),
            "hostname": socket.gethostname(),
        },
    )
    suite.extend(cases)
    ET.indent(suites)
    xml: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    return xml + b"\n"


def _testcase(state: CheckState, details: bool) -> ET.Element:
    took = f"{state.last.duration:.6f}" if state.last else "0"
    case = ET.Element("testcase", name=state.name, classname=f"probed.{state.type}", time=took)
    status = published_status(state.effective)
    if status is Status.FAIL:
        reason = state.reason.value if state.reason else "fail"
        output = xml_text(state.output) if details else ""
        label = reason if state.critical else f"{reason} (non-critical)"
        message = f"{label}: {output}" if output else label
        ET.SubElement(case, "failure", message=message, type=reason).text = output
    elif status is Status.WARN and details:
        ET.SubElement(case, "system-out").text = xml_text(f"warn: {state.output}")
    return case


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Characters XML 1.0 cannot carry even escaped (NUL, most control characters) replaced."""
    return _NOT_XML.sub("\ufffd", text)
