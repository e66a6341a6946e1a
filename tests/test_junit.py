"""`probed check --output junit`: one testcase per check, valid against the JUnit XML schema CI tools read."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from probed.checks import create_check
from probed.model import Reason, Result, Status
from probed.report import FORMATS, Report
from probed.store import Store
from tests.support.checks import NO_LEVELS_YAML, config_from
from tests.support.net import closed_port
from tests.support.probed import run_probed, write_config

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "junit.xsd")))


def valid_report(xml: bytes) -> etree._Element:
    document = etree.fromstring(xml)
    SCHEMA.assertValid(document)
    return document


def only(root: etree._Element, path: str) -> etree._Element:
    [element] = root.findall(path)
    return element


def test_one_testcase_per_check_and_failures_with_reason_and_output(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        f"""
checks:
  tmp: {{type: disk, path: '{tmp_path}', {NO_LEVELS_YAML}}}
  full: {{type: disk, path: '{tmp_path}', warn_free_percent: 100, fail_free_percent: null,
          warn_free_inodes_percent: null, fail_free_inodes_percent: null}}
  api: {{type: http, url: 'http://127.0.0.1:{closed_port()}/health', critical: false}}
""",
    )
    done = run_probed("check", "--config", config, "--output", "junit")
    assert done.returncode == 0, done.stderr  # only a non-critical check failed
    suites = valid_report(done.stdout.encode())
    [suite] = suites.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "0")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["tmp", "full", "api"]
    assert cases["api"].get("classname") == "probed.http"
    [failure] = cases["api"].findall("failure")
    assert failure.get("type") == "refused"
    assert failure.get("message", "").startswith("refused (non-critical): ")
    assert "connection refused" in (failure.text or "")
    assert len(cases["tmp"]) == 0  # a pass has no children
    assert cases["full"].findtext("system-out", "").startswith("warn: ")  # a warning passes, and says so


def test_a_critical_failure_exits_1_with_a_valid_report(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"checks:\n  db: {{type: http, url: 'http://127.0.0.1:{closed_port()}/'}}\n")
    done = run_probed("check", "--config", config, "-o", "junit")
    assert done.returncode == 1
    suites = valid_report(done.stdout.encode())
    assert only(suites, "testsuite/testcase/failure").get("message", "").startswith("refused: ")


def test_hostile_and_control_characters_stay_valid_xml() -> None:
    config = config_from({"db": {"type": "disk", "path": "/"}})
    store = Store([create_check(name, opts) for name, opts in config.checks.items()])
    hostile = "]]></failure><x a='\"'>\x00\x1b[31m & \ud800 done"
    store.record("db", Result(Status.FAIL, 1_700_000_000.0, 0.25, hostile, Reason.UNEXPECTED))
    suites = valid_report(FORMATS["junit"].render(Report.of_store(store, details=True)))
    failure = only(suites, "testsuite/testcase/failure")
    assert failure.text == "]]></failure><x a='\"'>\ufffd\ufffd[31m & \ufffd done"
    assert only(suites, "testsuite/testcase").get("time") == "0.250000"


def test_the_schema_is_not_a_rubber_stamp() -> None:
    with pytest.raises(etree.DocumentInvalid):
        valid_report(
            b'<testsuites><testsuite name="x" tests="1" failures="0" errors="0"><testcase/></testsuite></testsuites>'
        )
